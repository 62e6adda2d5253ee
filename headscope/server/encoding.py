"""How answers travel: JSON floats for scripts, safetensors for exact or compact binary answers,
and compression chosen from the client's Accept-Encoding, done on the model's worker thread so
that large answers never hold up the event loop.

Both binary formats are safetensors files (https://huggingface.co/docs/safetensors): an 8-byte
little-endian header length n, n bytes of JSON header, then the tensors' bytes. Every field of the
JSON answer but `attention` is in the header's `__metadata__`, each as a JSON-encoded string;
`attention` there maps each kind to {"dtype", "shape", "tensor", "scale"}:
  format "safetensors"  tensor `attention.<kind>` float32 (L, H, Tq, Tk): the exact weights
  format "compact"      tensor `attention.<kind>` uint8, each head scaled to its own maximum over the
                        rows that have a choice (CHOICE_ROWS), and `scale.<kind>` float32 (L, H):
                        weight = byte / 255 * scale[layer][head], within scale / 510 of the truth.
                        Weights above the scale (a causal kind's first row: its one visible key holds
                        the whole row) are bytes 255 and travel exactly in `overflow`: {"index":
                        `overflow_index.<kind>` int32 (N, 4), positions along the answer's `dims`,
                        "value": `overflow_value.<kind>` float32 (N,)}; null when there are none.
                        What the page uses.
Any format may be max-pooled for thumbnails (`pool_to`); the answer's `pool` says by how much.
With `rollout: true`, `rollout` maps each kind to {"dtype": "float32", "shape", "tensor": "rollout.<kind>"}
in both binary formats: one (Tq, Tk) matrix per kind, exact.
"""

import gzip
import math

import numpy as np
import orjson
import torch
import zstandard
from fastapi import Response

ZSTD_LEVEL = 1  # 128 tokens of page data: ~3.5 ms, 1.2 MB -> 0.34 MB
GZIP_LEVEL = 1  # for clients without zstd: ~11 ms, 1.2 MB -> 0.41 MB
BINARY_MEDIA_TYPE = "application/octet-stream"


CHOICE_ROWS = ("every row; a causal kind's rows but the first, whose one visible key holds the whole row, so that "
               "its 1 does not set every head's scale")


def choice_scale(pattern: torch.Tensor, causal: bool) -> torch.Tensor:
    """(L, H, Tq, Tk) -> (L, H): each head's largest weight over the rows that have a choice (CHOICE_ROWS)."""
    rows = pattern[..., 1:, :] if causal and pattern.shape[-2] > 1 else pattern
    return rows.amax(dim=(-2, -1))


def quantize(pattern: torch.Tensor, scale: torch.Tensor | None = None
             ) -> tuple[np.ndarray, list[list[float]], tuple[np.ndarray, np.ndarray] | None]:
    """(L, H, Tq, Tk) weights -> uint8 array scaled per head, the scales [layer][head], and the overflow.

    scale (L, H): what becomes 255 in each head (default: its largest weight); rounding keeps every weight up to it
    within scale / 510. Weights above it are 255 and listed exactly: (index (N, 4) int32, value (N,) float32), or
    None when there are none.
    """
    scale = pattern.amax(dim=(-2, -1)) if scale is None else scale  # (L, H)
    factor = (255.0 / scale.clamp_min(1e-30))[..., None, None]  # (L, H, 1, 1)
    levels = (pattern * factor).round_().clamp_(max=255)  # (L, H, Tq, Tk) in [0, 255]
    over = pattern > scale[..., None, None]  # (L, H, Tq, Tk)
    overflow = None
    if over.any():
        index = over.nonzero()  # (N, 4)
        overflow = (np.ascontiguousarray(index.to(torch.int32).numpy()), pattern[over].to(torch.float32).numpy())
    return levels.to(torch.uint8).numpy(), scale.tolist(), overflow


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


def max_pool(pattern: torch.Tensor, max_side: int | None) -> tuple[torch.Tensor, list[int]]:
    """(L, H, Tq, Tk) -> each head max-pooled so neither side exceeds max_side, and the block [rows, cols].

    A cell holds the largest weight of its block, so a thin line of attention stays visible.
    """
    L, H, Tq, Tk = pattern.shape
    if max_side is None or (Tq <= max_side and Tk <= max_side):
        return pattern, [1, 1]
    block = [math.ceil(Tq / max_side), math.ceil(Tk / max_side)]
    rows, cols = math.ceil(Tq / block[0]), math.ceil(Tk / block[1])  # the pooled sides
    # Weights are >= 0, so zeros padding the last blocks never win. Columns first, then rows: reading
    # the weights once in memory order takes ~60% of max_pool2d's time (80 against 136 ms at 512 tokens).
    pad = (0, cols * block[1] - Tk, 0, rows * block[0] - Tq)
    padded = torch.nn.functional.pad(pattern, pad) if any(pad) else pattern  # (L, H, Tq+, Tk+)
    pooled = padded.reshape(L, H, rows * block[0], cols, block[1]).amax(-1)  # (L, H, Tq+, Tk')
    return pooled.reshape(L, H, rows, block[0], cols).amax(3), block  # (L, H, Tq', Tk')


def safetensors_body(patterns: dict[str, torch.Tensor], fields: dict, exact: bool,
                     rollout: dict[str, torch.Tensor] | None = None,
                     scales: dict[str, torch.Tensor] | None = None) -> bytes:
    """The answer as a safetensors file: float32 weights (exact) or 8-bit per head (compact, each head's bytes scaled
    to scales[kind] (L, H), see choice_scale; default its largest weight); a rollout, when given, as float32
    (Tq, Tk) tensors `rollout.<kind>` in either format (it is small)."""
    from safetensors.numpy import save

    tensors, entries = {}, {}
    for kind, pattern in patterns.items():
        entry = {"shape": list(pattern.shape), "tensor": f"attention.{kind}"}
        if exact:
            tensors[entry["tensor"]] = pattern.numpy()
            entry.update(dtype="float32", scale=None)
        else:
            data, scale, overflow = quantize(pattern, None if scales is None else scales.get(kind))
            tensors[entry["tensor"]] = data
            tensors[f"scale.{kind}"] = np.asarray(scale, np.float32)
            entry.update(dtype="uint8", scale=f"scale.{kind}", scale_rows=CHOICE_ROWS, overflow=None)
            if overflow is not None:
                tensors[f"overflow_index.{kind}"], tensors[f"overflow_value.{kind}"] = overflow
                entry["overflow"] = {"index": f"overflow_index.{kind}", "value": f"overflow_value.{kind}"}
        entries[kind] = entry
    rollouts = None
    if rollout is not None:
        rollouts = {kind: {"dtype": "float32", "shape": list(r.shape), "tensor": f"rollout.{kind}"}
                    for kind, r in rollout.items()}
        tensors.update({f"rollout.{kind}": r.contiguous().numpy() for kind, r in rollout.items()})
    metadata = {key: dumps(value).decode() for key, value in {**fields, "attention": entries, "rollout": rollouts}.items()}
    return save(tensors, metadata=metadata)


def read_safetensors(body: bytes) -> dict:
    """Decode an (uncompressed) binary answer: the fields, with attention as float32 arrays."""
    from safetensors.numpy import load

    n = int.from_bytes(body[:8], "little")
    metadata = orjson.loads(body[8 : 8 + n])["__metadata__"]
    answer = {key: orjson.loads(value) for key, value in metadata.items()}
    tensors = load(body)
    for kind, entry in answer["attention"].items():
        data = tensors[entry["tensor"]]
        if entry["dtype"] == "uint8":
            data = data * (tensors[entry["scale"]][..., None, None] / 255)
            if entry.get("overflow"):  # weights above their head's scale, exact
                data[tuple(tensors[entry["overflow"]["index"]].T)] = tensors[entry["overflow"]["value"]]
        answer["attention"][kind] = data
    for kind, entry in (answer.get("rollout") or {}).items():
        answer["rollout"][kind] = tensors[entry["tensor"]]
    return answer


def encoded_response(body: bytes, encoding: str | None, media_type: str) -> Response:
    headers = {"Vary": "Accept-Encoding"}
    if encoding:
        headers["Content-Encoding"] = encoding
    return Response(body, media_type=media_type, headers=headers)
