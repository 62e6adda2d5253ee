"""headscope/models/images.py: pictures read safely, hostile ones refused before their pixels are decoded."""

import base64
import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from headscope.models.images import BadImage, ImageTooLarge, png_data_url, read_image

LIMIT = 1_000_000


def png_bytes(image: Image.Image, **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", **kw)
    return out.getvalue()


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def handmade_png(width: int, height: int, rows: int) -> bytes:
    """A grey 8-bit PNG whose header says width x height, with `rows` rows of zeros compressed."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * (rows * (width + 1)), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def test_a_grey_png_reads_as_its_pixels_in_rgb():
    pixels = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)
    got = read_image(png_bytes(Image.fromarray(pixels, "L")), LIMIT)
    assert got.shape == (8, 8, 3) and got.dtype == torch.float32
    for channel in range(3):
        np.testing.assert_allclose(got[..., channel].numpy(), pixels / 255.0, atol=1e-7)


def test_an_rgb_png_keeps_its_colours_and_its_own_size():
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)  # H 5, W 7
    got = read_image(png_bytes(Image.fromarray(rgb, "RGB")), LIMIT)
    assert got.shape == (5, 7, 3)
    np.testing.assert_allclose(got.numpy(), rgb / 255.0, atol=1e-7)


def test_rgba_is_composited_on_black():
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 128, 0, 255)  # opaque orange
    rgba[0, 1] = (255, 255, 255, 0)  # transparent: black
    rgba[1, 0] = (200, 100, 50, 128)  # half transparent: half its colour
    got = read_image(png_bytes(Image.fromarray(rgba, "RGBA")), LIMIT)
    np.testing.assert_allclose(got[0, 0].numpy(), [1, 128 / 255, 0], atol=1e-7)
    assert got[0, 1].tolist() == [0, 0, 0]
    np.testing.assert_allclose(got[1, 0].numpy(), np.array([200, 100, 50]) * 128 / 255 / 255, atol=2 / 255)


def test_a_jpeg_reads():
    out = io.BytesIO()
    Image.new("L", (8, 8), 200).save(out, format="JPEG", quality=95)
    assert abs(read_image(out.getvalue(), LIMIT).mean().item() - 200 / 255) < 0.02


def test_what_the_network_saw_is_a_png_of_exactly_those_pixels():
    pixels = torch.arange(64, dtype=torch.float32).reshape(8, 8) / 63  # (8, 8) grey
    url = png_data_url(pixels)
    assert url.startswith("data:image/png;base64,")
    back = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert back.mode == "L" and back.size == (8, 8)
    np.testing.assert_array_equal(np.asarray(back), np.round(pixels.numpy() * 255).astype(np.uint8))


def test_a_decompression_bomb_is_refused_from_its_header_without_decoding(monkeypatch):
    bomb = handmade_png(30000, 30000, 100)  # 900 M pixels said, a few KB sent
    assert len(bomb) < 20_000

    def no_decoding(self):
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)  # PNG's and JPEG's decoder
    with pytest.raises(ImageTooLarge, match="900000000 pixels.*max_image_pixels is 1000000") as refused:
        read_image(bomb, LIMIT)
    assert (refused.value.count, refused.value.limit) == (900_000_000, LIMIT)
    with pytest.raises(BadImage, match="5000 x 5000 = 25000000 pixels; max_image_pixels is 1000000"):
        read_image(handmade_png(5000, 5000, 10), LIMIT)  # under Pillow's own limit: ours says the size


@pytest.mark.parametrize("data, message", [
    (b"The cat sat on the mat.", "not a PNG or JPEG"),
    (b"", "not a PNG or JPEG"),
    (b"GIF89a" + b"\0" * 100, "not a PNG or JPEG"),
])
def test_not_an_image_is_refused(data, message):
    with pytest.raises(BadImage, match=message):
        read_image(data, LIMIT)


def test_zero_by_zero_is_refused():
    with pytest.raises(BadImage, match="(no pixels|not a PNG or JPEG)"):
        read_image(handmade_png(0, 0, 0), LIMIT)


def test_truncated_is_refused():
    data = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8), "L"))
    with pytest.raises(BadImage, match="(broken or truncated|not a readable)"):
        read_image(data[: len(data) // 2], LIMIT)


def test_animated_is_refused():
    frames = [Image.new("L", (8, 8), v) for v in (0, 255)]
    out = io.BytesIO()
    frames[0].save(out, format="PNG", save_all=True, append_images=frames[1:])
    with pytest.raises(BadImage, match="animated \\(2 frames\\)"):
        read_image(out.getvalue(), LIMIT)


def test_cmyk_and_16_bit_are_refused():
    out = io.BytesIO()
    Image.new("CMYK", (8, 8)).save(out, format="JPEG")
    with pytest.raises(BadImage, match="mode CMYK"):
        read_image(out.getvalue(), LIMIT)
    sixteen = png_bytes(Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)))
    with pytest.raises(BadImage, match="mode I;16"):
        read_image(sixteen, LIMIT)
