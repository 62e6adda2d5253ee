"""How attention weights travel: JSON floats for scripts, 8-bit bytes per head for the page."""

import base64

import orjson
import torch
from fastapi import Response


def compact(pattern: torch.Tensor) -> dict:
    """(L, H, Tq, Tk) weights -> uint8 bytes scaled per head; weight = byte / 255 * scale[l][h].

    Rounding to the nearest byte keeps every weight within scale / 510 of the truth.
    """
    scale = pattern.amax(dim=(-2, -1))  # (L, H), each head's largest weight
    levels = pattern * (255.0 / scale.clamp_min(1e-30))[..., None, None]  # (L, H, Tq, Tk) in [0, 255]
    data = levels.round_().to(torch.uint8)  # (L, H, Tq, Tk)
    return {
        "dtype": "uint8",
        "shape": list(pattern.shape),
        "scale": scale.tolist(),
        "data": base64.b64encode(data.numpy().tobytes()).decode("ascii"),
    }


def json_response(payload: dict, status_code: int = 200) -> Response:
    """Serialise with orjson: numpy arrays natively, NaN as null, no intermediate Python floats."""
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status_code, media_type="application/json")
