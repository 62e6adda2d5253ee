"""Reading an uploaded picture safely: PNG or JPEG bytes -> RGB pixels in [0, 1], or BadImage saying why; and what
every image model shares: ImageInfo (what it takes, how it cuts the picture), NotAnImage, and the PNG of what it saw.

The pixel size is read from the file's header (Pillow's `Image.open` is lazy: it parses the header only) and
checked against `max_pixels` BEFORE any pixel is decoded, so a decompression bomb (a 30,000 x 30,000 PNG of a
few KB) is refused without memory growing. Refused too: anything that is not a PNG or JPEG, a 0 x 0 image, an
animated one (APNG), CMYK, 16-bit and other modes than 8-bit grey, RGB(A) and palette, and a truncated file
(Pillow raises while decoding; LOAD_TRUNCATED_IMAGES stays off).

The server (headscope/server/inputs.py) passes its `max_image_pixels` limit; each image adapter's `prepare` fits the
(H, W, 3) picture to what its network reads (headscope/models/digits.py).
"""

import base64
import io
import re
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

FORMATS = ("PNG", "JPEG")
MODES = ("L", "RGB", "RGBA", "LA", "P", "1")  # 8-bit (or 1-bit) modes; CMYK, I;16, I, F are refused


class BadImage(ValueError):
    """An upload that is not a picture Headscope reads; the message says why and what it takes."""


class ImageTooLarge(BadImage):
    """An image with more pixels than allowed, said by its header (its pixels were never decoded)."""

    def __init__(self, message: str, count: int | None, limit: int):
        self.count, self.limit = count, limit
        super().__init__(message)


class NotAnImage(ValueError):
    """An image model was given something that is not a picture it can fit (a text, another shape)."""


@dataclass(frozen=True)
class ImageInfo:
    """What an image model takes and how it cuts the image (an image adapter's `.image`; GET /api/models `image`)."""

    size: tuple[int, int]  # (height, width) in pixels the network reads
    channels: int  # 1: grey, 3: RGB
    patch_size: tuple[int, int]  # (height, width) of a patch in pixels
    patch_grid: tuple[int, int]  # (rows, cols) of patches
    class_token: int  # the position of the class token
    classes: tuple[str, ...]  # the label of each output class; empty for a feature model (predicts nothing)
    first_patch: int = 1  # patch (r, c) is position first_patch + r * cols + c
    not_patches: tuple[int, ...] = (0,)  # the positions that are no patch: the class token, DeiT's [DIST], registers
    predicts: bool = True  # False: a feature model (no classifier head): no classes, prediction, probabilities
    pad: bool = False  # True: pictures a person draws at the model's own size (the page's pad); else upload only


def image_fields(info: ImageInfo, logits: torch.Tensor | None) -> dict:
    """logits (K,) (None for a feature model) -> the `image` fields of an Analysis that every image model shares."""
    fields = {"size": list(info.size), "channels": info.channels, "patch_size": list(info.patch_size),
              "patch_grid": list(info.patch_grid), "class_token": info.class_token, "first_patch": info.first_patch,
              "not_patches": list(info.not_patches), "predicts": info.predicts, "pad": info.pad,
              "classes": list(info.classes), "prediction": None, "probabilities": None}
    if logits is not None:
        probs = logits.float().softmax(-1)  # (K,)
        fields.update(prediction=info.classes[int(probs.argmax())], probabilities=probs.tolist())
    return fields


def read_image(data: bytes, max_pixels: int) -> torch.Tensor:
    """PNG or JPEG bytes -> (H, W, 3) float32 RGB pixels in [0, 1] of the picture's own size (alpha composited on
    black)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)  # the header only
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:  # Pillow's own, larger limit
        said = re.search(r"\((\d+) pixels\)", str(e))  # Pillow: "Image size (900000000 pixels) exceeds limit ..."
        raise ImageTooLarge(f"image is too large ({e}); max_image_pixels is {max_pixels}",
                            int(said.group(1)) if said else None, max_pixels) from None
    except UnidentifiedImageError:  # Pillow also refuses a 0 x 0 PNG here
        raise BadImage("not a PNG or JPEG image Headscope can read; send a PNG or JPEG") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImage(f"not a readable PNG or JPEG image: {e}") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageTooLarge(f"image is {width} x {height} = {width * height} pixels; max_image_pixels is "
                                f"{max_pixels}", width * height, max_pixels)
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
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0  # (H, W, 3)
    return torch.from_numpy(rgb.copy())


def png_data_url(pixels: torch.Tensor) -> str:
    """(H, W) grey or (H, W, 3) RGB pixels in [0, 1] -> a "data:image/png;base64,..." PNG of exactly those pixels
    (rounded to 8 bits): what an Analysis's `image.seen` holds."""
    array = (pixels.detach().float().clamp(0, 1).numpy() * 255).round().astype(np.uint8)  # (H, W) or (H, W, 3)
    out = io.BytesIO()
    Image.fromarray(array, "L" if array.ndim == 2 else "RGB").save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")
