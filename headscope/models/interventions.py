"""Knocking attention heads out, and watching what a head hands on.

Ablating head h of one attention module replaces that head's output z_h = pattern_h @ V_h (B, Tq, D),
the piece the heads are concatenated from before the output projection, with
  "zero"  0, as if the head were not there (Michel et al. 2019 mask heads this way), or
  "mean"  its mean over the query positions of this text (padding excluded), so the layers after
          it still get the head's typical output, but nothing that depends on where it looked.
Patterns themselves are untouched: an ablated head's own weights stay as they were; the layers
after it see a different input, so their patterns change.

Every attention module a model runs, ours (headscope/models/attention.py) or a transformers one (through
headscope/models/hf/attention.py), reads two attributes that are None unless someone sets them:
  ablation  (heads, mode): which of its heads to knock out, and how
  capture   a list: each call appends {"query", "key", "value", "pattern", "z"} of this module
`ablating` and `capturing` set them for the length of a `with` block. Models run on one thread at
a time (headscope/server/runner.py), so a block covers exactly the forward passes made inside it.

A model adapter lists its modules with `attention_modules()`: (kind, layer) -> module.
"""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

Mode = Literal["zero", "mean"]
MODES: tuple[Mode, ...] = ("zero", "mean")


class BadAblation(ValueError):
    """An ablation that names a kind, layer or head the model does not have."""


@dataclass(frozen=True)
class Ablation:
    heads: tuple[tuple[str, int, int], ...]  # (kind, layer, head) of every head knocked out
    mode: Mode = "zero"

    def by_module(self) -> dict[tuple[str, int], tuple[int, ...]]:
        """(kind, layer) -> the heads of that module to knock out, sorted."""
        out: dict[tuple[str, int], set[int]] = {}
        for kind, layer, head in self.heads:
            out.setdefault((kind, layer), set()).add(head)
        return {key: tuple(sorted(heads)) for key, heads in out.items()}


def check_ablation(ablation: Ablation, modules: dict[tuple[str, int], nn.Module], heads: int) -> None:
    """BadAblation naming the first (kind, layer, head) the model does not have."""
    if ablation.mode not in MODES:
        raise BadAblation(f"ablation must be one of {', '.join(MODES)}, not {ablation.mode!r}")
    kinds = sorted({kind for kind, _ in modules})
    for kind, layer, head in ablation.heads:
        if kind not in kinds:
            raise BadAblation(f"ablate: kind {kind!r} is not one of this model's kinds ({', '.join(kinds)})")
        layers = sum(1 for k, _ in modules if k == kind)
        if not 0 <= layer < layers:
            raise BadAblation(f"ablate: layer {layer} of {kind} is out of range 0..{layers - 1}")
        if not 0 <= head < heads:
            raise BadAblation(f"ablate: head {head} is out of range 0..{heads - 1}")


def ablate_z(z: torch.Tensor, heads: Iterable[int], mode: Mode, head_axis: int, query_axis: int,
             query_valid: torch.Tensor | None = None) -> torch.Tensor:
    """z with the given heads replaced by 0 or by their mean over valid query positions; a new tensor.

    z: per-head outputs, e.g. (B, H, Tq, D) for headscope/models/attention.py or (B, Tq, H, D) for transformers.
    query_valid: (B, Tq) bool, False at padded queries (None: every query counts).
    """
    index = torch.tensor(list(heads), device=z.device)
    picked = z.index_select(head_axis, index)
    if mode == "zero":
        replaced = torch.zeros_like(picked)
    else:
        if query_valid is None:
            mean = picked.mean(dim=query_axis, keepdim=True)
        else:
            shape = [1] * z.dim()
            shape[0], shape[query_axis] = query_valid.shape
            weight = query_valid.reshape(shape).to(z.dtype)  # 1 at real queries, broadcast over heads and D
            mean = (picked * weight).sum(dim=query_axis, keepdim=True) / weight.sum(dim=query_axis, keepdim=True)
        replaced = mean.expand_as(picked)
    return z.index_copy(head_axis, index, replaced)


@contextmanager
def ablating(modules: dict[tuple[str, int], nn.Module], ablation: Ablation | None) -> Iterator[None]:
    """Within the block, the model's forward passes run with the ablation's heads knocked out."""
    if ablation is None or not ablation.heads:
        yield
        return
    chosen = ablation.by_module()
    try:
        for key, heads in chosen.items():
            modules[key].ablation = (heads, ablation.mode)
        yield
    finally:
        for key in chosen:
            modules[key].ablation = None


@contextmanager
def capturing(modules: dict[tuple[str, int], nn.Module]) -> Iterator[dict[tuple[str, int], list[dict]]]:
    """Within the block, every call of every attention module records its query, key, value, pattern and z.

    Yields (kind, layer) -> list of records, one per call (generation calls a module once per step).
    Shapes: query (B, H, Tq, D), key and value (B, H_kv, Tk, D) (H_kv < H with grouped-query
    attention), pattern (B, H, Tq, Tk), z (B, H, Tq, D) before any ablation.
    """
    records: dict[tuple[str, int], list[dict]] = {key: [] for key in modules}
    try:
        for key, module in modules.items():
            module.capture = records[key]
        yield records
    finally:
        for module in modules.values():
            module.capture = None
