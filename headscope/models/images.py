"""Reading an uploaded picture safely: PNG or JPEG bytes -> grey pixels in [0, 1], or BadImage saying why.

The pixel size is read from the file's header (Pillow's `Image.open` is lazy: it parses the header only) and
checked against `max_pixels` BEFORE any pixel is decoded, so a decompression bomb (a 30,000 x 30,000 PNG of a
few KB) is refused without memory growing. Refused too: anything that is not a PNG or JPEG, a 0 x 0 image, an
animated one (APNG), CMYK, 16-bit and other modes than 8-bit grey, RGB(A) and palette, and a truncated file
(Pillow raises while decoding; LOAD_TRUNCATED_IMAGES stays off).

Not wired into the server yet (issue 19, item 2): the route will pass its `max_image_pixels` limit.
"""

import io
import warnings

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

FORMATS = ("PNG", "JPEG")
MODES = ("L", "RGB", "RGBA", "LA", "P", "1")  # 8-bit (or 1-bit) modes; CMYK, I;16, I, F are refused


class BadImage(ValueError):
    """An upload that is not a picture Headscope reads; the message says why and what it takes."""


def read_image(data: bytes, max_pixels: int) -> torch.Tensor:
    """PNG or JPEG bytes -> (H, W) float32 grey pixels in [0, 1] (alpha composited on black)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)  # the header only
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:  # Pillow's own, larger limit
        raise BadImage(f"image is too large ({e}); max_image_pixels is {max_pixels}") from None
    except UnidentifiedImageError:  # Pillow also refuses a 0 x 0 PNG here
        raise BadImage("not a PNG or JPEG image Headscope can read; send a PNG or JPEG") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImage(f"not a readable PNG or JPEG image: {e}") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise BadImage(f"image is {width} x {height} = {width * height} pixels; max_image_pixels is {max_pixels}")
        if width == 0 or height == 0:
            raise BadImage(f"image is {width} x {height}: it has no pixels")
        if getattr(image, "n_frames", 1) > 1:
            raise BadImage(f"image is animated ({image.n_frames} frames); send a single still image")
        if image.mode not in MODES:
            raise BadImage(f"image mode {image.mode} is not read (CMYK, 16-bit and float images are refused); "
                           "send 8-bit grey, RGB or RGBA")
        try:
            image.load()  # decode now, within the size checked
        except (OSError, SyntaxError, ValueError) as e:
            raise BadImage(f"image data is broken or truncated: {e}") from None
        if image.mode in ("RGBA", "LA", "P"):
            image = image.convert("RGBA")
            black = Image.new("RGBA", image.size, (0, 0, 0, 255))
            image = Image.alpha_composite(black, image)
        grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0  # (H, W)
    return torch.from_numpy(grey.copy())
