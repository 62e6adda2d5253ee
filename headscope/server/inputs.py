"""What a request asks a model to read: a text (cut to the model's max_chars) or an image (decoded safely), checked
against what the model takes (ModelInfo.takes): a text to an image model, or an image to a text model, is a 422
`wrong_input` naming what the model takes.

An image travels as base64 (optionally a data URL). Its size is checked twice before its pixels exist: the base64
length against `max_image_bytes` before it is decoded, then the pixel count in the file's header against
`max_image_pixels` before the pixels are decoded (headscope/models/images.py's read_image), so a decompression bomb
is refused without the server's memory growing.
"""

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

import torch

from headscope.models.analysis import AttentionModel, cut_to_chars
from headscope.models.images import BadImage, ImageTooLarge, read_image
from headscope.server.errors import ApiError, ErrorCode
from headscope.server.runner import ModelRunner
from headscope.server.schemas.common import TextRequest
from headscope.server.settings import Settings

DATA_URL = re.compile(r"data:image/[A-Za-z0-9.+-]+;base64,")


@dataclass(frozen=True)
class ModelInput:
    """What the model runs: `value` (a text, or an (H, W, 3) picture) and what identifies it in a request's key."""

    value: str | torch.Tensor
    cut: bool  # a text cut to max_chars before it was tokenized
    key: str | tuple  # the text, or ("image", sha256 of the file): tensors are not compared by value in a dict


def check_takes(model: AttentionModel, req: TextRequest) -> None:
    """422 wrong_input when the request sends what the model does not take; 422 naming the field when it sends
    nothing at all."""
    name, takes = model.info.name, model.info.takes
    if takes == "image":
        if req.text is not None or req.image is None:
            raise ApiError(ErrorCode.wrong_input, f"{name} takes an image, not a text: send `image` (a PNG or JPEG "
                           "in base64) instead of `text`", takes=takes, field="image")
    elif req.image is not None:
        raise ApiError(ErrorCode.wrong_input, f"{name} takes a text, not an image: send `text` instead of `image` "
                       "(GET /api/models says what each model takes)", takes=takes, field="text")
    elif req.text is None:
        raise ApiError(ErrorCode.validation_error, f"text: Field required: a string ({name} takes a text)",
                       field="text",
                       errors=[{"loc": ["body", "text"], "msg": "Field required", "type": "missing"}])


def image_bytes(image: str, max_bytes: int) -> bytes:
    """The file in a base64 string (a data URL's prefix dropped), its length checked before it is decoded."""
    match = DATA_URL.match(image)
    data = image[match.end():] if match else image
    size = len(data) * 3 // 4  # at least the decoded length, minus at most 2 bytes of padding
    if size - 2 > max_bytes:
        raise ApiError(ErrorCode.image_too_large, f"image is about {size} bytes; max_image_bytes is {max_bytes}",
                       count=size, limit=max_bytes, field="image")
    data = "".join(data.split())  # base64 wrapped in lines (as `base64` writes it) reads too
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(ErrorCode.bad_image, "image is not base64 (a PNG or JPEG file in base64, optionally "
                       "`data:image/png;base64,...`)", field="image") from None
    if len(decoded) > max_bytes:
        raise ApiError(ErrorCode.image_too_large, f"image is {len(decoded)} bytes; max_image_bytes is {max_bytes}",
                       count=len(decoded), limit=max_bytes, field="image")
    return decoded


def decode_image(data: bytes, max_pixels: int) -> torch.Tensor:
    """read_image with its refusals as 422s naming the problem or the limit."""
    try:
        return read_image(data, max_pixels)
    except ImageTooLarge as e:
        raise ApiError(ErrorCode.image_too_large, str(e), count=e.count, limit=e.limit, field="image") from None
    except BadImage as e:
        raise ApiError(ErrorCode.bad_image, str(e), field="image") from None


async def model_input(model: AttentionModel, req: TextRequest, runner: ModelRunner, settings: Settings) -> ModelInput:
    """The request's text or picture, checked against what the model takes; a picture is decoded on the model's
    thread (one at a time, so at most one max_image_pixels picture is being decoded)."""
    check_takes(model, req)
    if model.info.takes == "image":
        data = image_bytes(req.image, settings.max_image_bytes)
        pixels = await runner.run(decode_image, data, settings.max_image_pixels)  # (H, W, 3)
        return ModelInput(pixels, False, ("image", hashlib.sha256(data).hexdigest()))
    text, cut = cut_to_chars(model.info, req.text, req.truncate)
    return ModelInput(text, cut, text)
