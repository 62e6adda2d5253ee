"""How answers travel: JSON floats for scripts, 8-bit bytes per head for the page, and
compression chosen from the client's Accept-Encoding, done on the model's worker thread so
that large answers never hold up the event loop.

The compact encoding is one binary body:

    [header length n: uint32, little-endian][header: n bytes of UTF-8 JSON][attention bytes]

The header has every field of the JSON answer, except that each attention kind is
{"dtype": "uint8", "shape": [L, H, Tq, Tk], "scale": [[...]], "offset": o, "length": k}: bytes
o .. o+k of the attention bytes, row-major over shape, weight = byte / 255 * scale[layer][head].
"""

import gzip
import struct

import numpy as np
import orjson
import torch
import zstandard
from fastapi import Response

ZSTD_LEVEL = 1  # 128 tokens of page data: ~3.5 ms, 1.2 MB -> 0.34 MB
GZIP_LEVEL = 1  # for clients without zstd: ~11 ms, 1.2 MB -> 0.41 MB
COMPACT_MEDIA_TYPE = "application/octet-stream"


def quantize(pattern: torch.Tensor) -> tuple[np.ndarray, list[list[float]]]:
    """(L, H, Tq, Tk) weights -> uint8 array scaled per head, and the scales [layer][head].

    Each head's largest weight becomes 255; rounding keeps every weight within scale / 510.
    """
    scale = pattern.amax(dim=(-2, -1))  # (L, H)
    levels = pattern * (255.0 / scale.clamp_min(1e-30))[..., None, None]  # (L, H, Tq, Tk) in [0, 255]
    return levels.round_().to(torch.uint8).numpy(), scale.tolist()


def dumps(payload: dict) -> bytes:
    """orjson: numpy arrays natively, NaN as null, no intermediate Python floats."""
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def json_response(payload: dict, status_code: int = 200) -> Response:
    return Response(dumps(payload), status_code=status_code, media_type="application/json")


def choose_encoding(accept_encoding: str) -> str | None:
    """zstd, else gzip, else none, from an Accept-Encoding header (a coding with q=0 is refused)."""
    accepted = set()
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.partition(";")
        q = params.strip().removeprefix("q=")
        if not (q and q.replace(".", "").strip("0") == ""):  # not q=0 / q=0.0
            accepted.add(coding.strip())
    return next((c for c in ("zstd", "gzip") if c in accepted), None)


def compress(body: bytes, encoding: str | None) -> bytes:
    if encoding == "zstd":
        return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(body)
    if encoding == "gzip":
        return gzip.compress(body, compresslevel=GZIP_LEVEL)
    return body


def compact_body(patterns: dict[str, torch.Tensor], fields: dict) -> bytes:
    """The compact body of an answer: `fields` plus `patterns` as 8-bit bytes."""
    entries, blocks, offset = {}, [], 0
    for kind, pattern in patterns.items():
        data, scale = quantize(pattern)
        entries[kind] = {"dtype": "uint8", "shape": list(pattern.shape), "scale": scale, "offset": offset,
                         "length": data.size}
        blocks.append(data)  # joined below without an extra copy
        offset += data.size
    header = dumps({**fields, "attention": entries})
    return b"".join([struct.pack("<I", len(header)), header, *blocks])


def read_compact(body: bytes) -> dict:
    """Decode an (uncompressed) compact body: the header, with attention as float32 arrays."""
    (n,) = struct.unpack("<I", body[:4])
    header = orjson.loads(body[4 : 4 + n])
    for kind, entry in header["attention"].items():
        data = np.frombuffer(body, np.uint8, entry["length"], 4 + n + entry["offset"]).reshape(entry["shape"])
        header["attention"][kind] = data * (np.asarray(entry["scale"], np.float32)[..., None, None] / 255)
    return header


def encoded_response(body: bytes, encoding: str | None, media_type: str) -> Response:
    headers = {"Vary": "Accept-Encoding"}
    if encoding:
        headers["Content-Encoding"] = encoding
    return Response(body, media_type=media_type, headers=headers)
