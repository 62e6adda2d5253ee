"""One way to run a model with edits, and to capture what a run produced.

Like TransformerLens' hook points, every model exposes the same named places of its forward pass, so that
ablation, patching and capture are uses of one mechanism, written once, not once per model:

  z            each head's output z_h = pattern_h @ V_h before the output projection: (B, H, Tq, D), one place per
               attention module, keyed (kind, layer) (`attention_modules()` of every adapter)
  resid_pre    the residual stream entering a layer: (B, T, C), keyed ("resid_pre", stack, layer)
  attn_out     an attention module's output after its W_O (bias included), before it is added to the stream:
               (B, T, C), keyed ("attn_out", kind, layer)
  mlp_out      a layer's MLP output before it is added to the stream: (B, T, C), keyed ("mlp_out", stack, layer)
  resid_final  the stream after the last layer, entering the final norm (models that predict tokens):
               (B, T, C), keyed ("resid_final", stack, layers)
A stack is the kind of its self-attention ("encoder" or "decoder"): an encoder–decoder's decoder layer holds
("attn_out", "decoder", l) and ("attn_out", "cross", l), and one ("mlp_out", "decoder", l). The stream places are
`hook_points()` of every adapter: a `HookPoint` (below) in our nets' forward passes, and the same object driven by
forward hooks on a transformers checkpoint's modules (headscope/models/hf/hooks.py).

An edit changes the tensor at one place for the length of an `editing` block; a capture records it. Every
place reads two attributes that are empty unless a block sets them:
  edits    a tuple of edits: applied in order, HeadEdits to an attention module's z before the output projection,
           StreamEdits to a hook point's (B, T, C) tensor
  capture  a list: each call appends a record; an attention module's {"query", "key", "value", "pattern", "z",
           "scale", "mask", ...}, a hook point's {"x"}; both before any edit
`editing` and `capturing` set them for the length of a `with` block. Models run on one thread at a time
(headscope/server/runner.py), so a block covers exactly the forward passes made inside it.

A HeadEdit replaces heads' z, at all query positions or some, in all batch rows or some, with
  "zero"     0, as if the head were not there (Michel et al. 2019 mask heads this way)
  "mean"     its mean over the real (unpadded) query positions of the same row and pass, so the layers after it
             still get the head's typical output, but nothing that depends on where it looked
  "replace"  the z of the same head in another run (`value`, captured there): activation patching
A StreamEdit replaces a hook point's tensor at some positions of some rows with the same place's tensor from
another run (activation patching of the residual stream, an attention output or an MLP output).
Patterns themselves are untouched: an edited head's own weights stay as they were; the layers after it see a
different input, so their patterns change. With `rows`, one batched pass runs many different edits, one per row.

An `Ablation` (heads + zero|mean) is what a request asks for; `ablation.edits()` are its HeadEdits.
"""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from headscope.models.metric_choice import MetricChoice

AblationMode = Literal["zero", "mean"]
MODES: tuple[AblationMode, ...] = ("zero", "mean")  # the ablation modes a request may ask for
EditMode = Literal["zero", "mean", "replace"]


class BadAblation(ValueError):
    """An ablation that names a kind, layer or head the model does not have."""


@dataclass(frozen=True)
class HeadEdit:
    """Replace the z of some heads of the attention module computing (kind, layer).

    heads: which heads; positions: which query positions (None: all); rows: which batch rows (None: all);
    value: for "replace", the z to put in, (1 or B, H, Tq, D) like the module's own, from another run.
    """

    kind: str
    layer: int
    heads: tuple[int, ...]
    mode: EditMode = "zero"
    positions: tuple[int, ...] | None = None
    rows: tuple[int, ...] | None = None
    value: torch.Tensor | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> tuple[str, int]:
        """The place it edits: the attention module computing (kind, layer)."""
        return (self.kind, self.layer)

    def apply(self, z: torch.Tensor, query_valid: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, H, Tq, D) with this edit made; a new tensor. query_valid: (B, Tq) bool, False at padded queries
        (None: every query is real)."""
        B, H, Tq, D = z.shape
        rows, heads, positions = indices(B, self.rows), torch.tensor(self.heads), indices(Tq, self.positions)
        where = torch.zeros(B, H, Tq, 1, dtype=torch.bool, device=z.device)  # (B, H, Tq, 1): the cells replaced
        where[rows[:, None, None], heads[None, :, None], positions[None, None, :]] = True
        if self.mode == "zero":
            replacement = torch.zeros_like(z)
        elif self.mode == "mean":
            if query_valid is None:
                replacement = z.mean(dim=2, keepdim=True)  # (B, H, 1, D)
            else:
                weight = query_valid[:, None, :, None].to(z.dtype)  # (B, 1, Tq, 1): 1 at real queries
                replacement = (z * weight).sum(dim=2, keepdim=True) / weight.sum(dim=2, keepdim=True)  # (B, H, 1, D)
        elif self.value is None or self.value.shape[1:] != z.shape[1:] or self.value.shape[0] not in (1, B):
            raise BadAblation(f"{self.kind} layer {self.layer}: a replace edit needs a value shaped (1 or {B}, "
                              f"{H}, {Tq}, {D}) like the module's z, not "
                              f"{None if self.value is None else tuple(self.value.shape)}")
        else:
            replacement = self.value.to(z.dtype)  # (1 or B, H, Tq, D)
        return torch.where(where, replacement.expand_as(z), z)  # (B, H, Tq, D)


POINTS = ("resid_pre", "attn_out", "mlp_out", "resid_final")  # the stream hook points every adapter may expose


@dataclass(frozen=True)
class StreamEdit:
    """Replace a hook point's (B, T, C) tensor at some positions of some rows with `value` from another run.

    point: one of POINTS; kind, layer: which one (see the module docstring); positions, rows: None for all;
    value: (1 or B, T, C), the same place's tensor captured in the other run.
    """

    point: str
    kind: str
    layer: int
    value: torch.Tensor = field(compare=False, repr=False)
    positions: tuple[int, ...] | None = None
    rows: tuple[int, ...] | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.point, self.kind, self.layer)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) with this edit made; a new tensor."""
        B, T, C = x.shape
        if self.value.shape[1:] != x.shape[1:] or self.value.shape[0] not in (1, B):
            raise BadAblation(f"{self.point} of {self.kind} layer {self.layer}: a replace edit needs a value shaped "
                              f"(1 or {B}, {T}, {C}), not {tuple(self.value.shape)}")
        rows, positions = indices(B, self.rows), indices(T, self.positions)
        where = torch.zeros(B, T, 1, dtype=torch.bool, device=x.device)  # (B, T, 1): the cells replaced
        where[rows[:, None], positions[None, :]] = True
        return torch.where(where, self.value.to(x.dtype).expand_as(x), x)  # (B, T, C)


class HookPoint(torch.nn.Module):
    """A named place of a forward pass that holds a (B, T, C) tensor: an identity, unless an `editing` block gave
    it edits; a `capturing` block makes it record what passed ({"x": the tensor, before any edit})."""

    def __init__(self):
        super().__init__()
        self.edits: tuple = ()  # StreamEdits
        self.capture: list[dict] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.capture is not None:
            self.capture.append({"x": x})
        for edit in self.edits:
            x = edit.apply(x)
        return x


def indices(n: int, chosen: tuple[int, ...] | None) -> torch.Tensor:
    """The chosen indices of an axis of n, or all of them (None)."""
    return torch.arange(n) if chosen is None else torch.tensor(chosen, dtype=torch.long)


def edit_z(module, z: torch.Tensor, query_valid: torch.Tensor | None = None) -> torch.Tensor:
    """z (B, H, Tq, D) after the edits the module holds (none: z itself)."""
    for edit in getattr(module, "edits", ()):
        z = edit.apply(z, query_valid)
    return z


@dataclass(frozen=True)
class Ablation:
    """Heads to knock out, and how: what a request's `ablate` and `ablation` ask for."""

    heads: tuple[tuple[str, int, int], ...]  # (kind, layer, head) of every head knocked out
    mode: AblationMode = "zero"
    metric: MetricChoice | None = None  # what the effect also scores (headscope/models/metric_choice.py); no edit

    def by_module(self) -> dict[tuple[str, int], tuple[int, ...]]:
        """(kind, layer) -> the heads of that module to knock out, sorted."""
        out: dict[tuple[str, int], set[int]] = {}
        for kind, layer, head in self.heads:
            out.setdefault((kind, layer), set()).add(head)
        return {key: tuple(sorted(heads)) for key, heads in out.items()}

    def edits(self) -> tuple[HeadEdit, ...]:
        return tuple(HeadEdit(kind, layer, heads, self.mode) for (kind, layer), heads in self.by_module().items())


def check_ablation(ablation: Ablation, modules: dict[tuple[str, int], nn.Module], heads: int) -> None:
    """BadAblation naming the first (kind, layer, head) the model does not have."""
    if ablation.mode not in MODES:
        raise BadAblation(f"ablation must be one of {', '.join(MODES)}, not {ablation.mode!r}")
    check_heads(ablation.heads, modules, heads)


def check_heads(named: Iterable[tuple[str, int, int]], modules: dict[tuple[str, int], nn.Module], heads: int) -> None:
    """BadAblation naming the first (kind, layer, head) that is not among the modules' heads."""
    kinds = list(dict.fromkeys(kind for kind, _ in modules))
    for kind, layer, head in named:
        if kind not in kinds:
            raise BadAblation(f"ablate: kind {kind!r} is not one of this model's kinds ({', '.join(kinds)})")
        layers = sum(1 for k, _ in modules if k == kind)
        if not 0 <= layer < layers:
            raise BadAblation(f"ablate: layer {layer} of {kind} is out of range 0..{layers - 1}")
        if not 0 <= head < heads:
            raise BadAblation(f"ablate: head {head} is out of range 0..{heads - 1}")


@contextmanager
def editing(modules: dict[tuple, nn.Module], edits: Iterable[HeadEdit | StreamEdit]) -> Iterator[None]:
    """Within the block, the model's forward passes run with the edits made (in the order given). `modules`: the
    places by key, attention modules ((kind, layer)) and hook points ((point, kind, layer)) alike; each edit goes
    to the place of its `key`."""
    chosen: dict[tuple, list] = {}
    for edit in edits:
        chosen.setdefault(edit.key, []).append(edit)
    try:
        for key, module_edits in chosen.items():
            modules[key].edits = tuple(module_edits)
        yield
    finally:
        for key in chosen:
            modules[key].edits = ()


def ablating(modules: dict[tuple[str, int], nn.Module], ablation: Ablation | None):
    """Within the block, the ablation's heads are knocked out: `editing` with its edits."""
    return editing(modules, () if ablation is None else ablation.edits())


@contextmanager
def capturing(modules: dict[tuple, nn.Module]) -> Iterator[dict[tuple, list[dict]]]:
    """Within the block, every call of every place given records what it computed: an attention module its query,
    key, value, pattern and z; a hook point its tensor {"x": (B, T, C)}.

    Yields key -> list of records, one per call (generation calls a module once per step).
    Shapes: query (B, H, Tq, D), key and value (B, H_kv, Tk, D) (H_kv < H with grouped-query
    attention), pattern (B, H, Tq, Tk), z (B, H, Tq, D) before any edit; scale (a number); mask, the additive
    mask the scores were given ((B or 1, 1 or H, Tq, Tk), 0 or -inf / the dtype's lowest) or None.
    """
    records: dict[tuple[str, int], list[dict]] = {key: [] for key in modules}
    try:
        for key, module in modules.items():
            module.capture = records[key]
        yield records
    finally:
        for module in modules.values():
            module.capture = None
