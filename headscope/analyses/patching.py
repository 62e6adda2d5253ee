"""Activation patching: which activations carry the difference between a clean and a corrupted prompt.

Run a clean prompt ("When Mary and John went to the store, John gave a drink to" -> " Mary") and a corrupted one of
the same length (the names swapped), record every activation of each, then run one of them again with a single
activation taken from the other, and measure how much of the difference in the answer that one activation carries
(Meng et al. 2022, causal tracing; Wang et al. 2022, IOI; Heimersheim & Nanda 2024; TransformerLens' `patching`):

  direction "denoise"   run the corrupted prompt with one clean activation: is it *sufficient* to bring the answer back?
            "noise"     run the clean prompt with one corrupted activation: is it *necessary* for the answer?
  recovery = (patched - corrupted) / (clean - corrupted)     in both directions: 1 = the clean metric, 0 = the corrupted
            (for noising, 1 - recovery is the share of the clean behaviour the one activation destroys)

What can be patched (`patch`), each a cell of a map, through the model's hook points (headscope/models/interventions.py):
  heads           each head's output z (before W_O) at every position:      dims [layer, head], one map per kind
  head_positions  each head's z at one query position:                     dims [layer, head, position]
  residual        the residual stream entering each layer, at one position: dims [layer, position], one per stack
  layers          each attention module's output (after W_O) and each MLP's output, at one position:
                                                                           dims [layer, position], one map each

The metric (`metric`), read where the answer is (names and meanings: headscope/models/metric_choice.py, the one
definition ablation and importance share; their `loss` over a span is not a patching metric):
  logit_diff        logit(answer) - logit(wrong): a causal LM at the last position (its prediction of the next token);
                    an encoder–decoder at output step `step`, teacher-forced on the clean run's greedy output (both
                    runs read the same decoder tokens, so only the input differs)
  prob              the answer's probability there (softmax over the whole vocabulary)
  embedding_cosine  an encoder (no tokens to predict): the cosine of the run's sentence embedding (mean of the final
                    hidden states over every token, as sentence-transformers pools MiniLM) to the clean run's; the
                    clean metric is 1
Clean and corrupted must tokenize to the same number of tokens (else position i would not mean the same in both);
answer and wrong must each be one token of the model's output vocabulary.

Cost: two recorded runs, then one patched pass per cell, batched: every row of a pass is the same prompt with a
different cell patched (HeadEdit / StreamEdit `rows`), so a batch of cells is one forward pass.

Legend: B batch rows, H heads, T positions, D head width, C model width, V vocabulary.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import torch

from headscope.analyses.heads import head_name
from headscope.analyses.importance import CannotMeasure
from headscope.models.analysis import AttentionModel, cut_to_chars
from headscope.models import metric_choice
from headscope.models.interventions import HeadEdit, StreamEdit, capturing, editing
from headscope.models.metric_choice import LAST_POSITION, METRIC_ABOUT, BadMetric

Mode = Literal["heads", "head_positions", "residual", "layers"]
Direction = Literal["denoise", "noise"]
Metric = Literal["logit_diff", "prob", "embedding_cosine"]
MODES: tuple[Mode, ...] = ("heads", "head_positions", "residual", "layers")
DIRECTIONS: tuple[Direction, ...] = ("denoise", "noise")
METRICS: tuple[Metric, ...] = ("logit_diff", "prob", "embedding_cosine")
BATCH_ROWS = 64  # cells patched in one forward pass, at most...
BATCH_POSITIONS = 4096  # ...and at most this many positions (rows x the prompt's tokens) per pass
SAME = 1e-6  # |clean - corrupted| below this: recovery is undefined (null)

RECOVERY = "(patched - corrupted) / (clean - corrupted): 1 = the clean metric, 0 = the corrupted"
DIRECTION_ABOUT = {
    "denoise": "the corrupted prompt is run with one activation from the clean run: is that activation sufficient to "
    "restore the clean behaviour?",
    "noise": "the clean prompt is run with one activation from the corrupted run: is that activation necessary for "
    "the clean behaviour? (1 - recovery is the share it destroys)",
}


class CannotPatch(CannotMeasure):
    """A patching request that cannot run: `code` names the problem (headscope/server/errors.py ErrorCode)."""


@dataclass(frozen=True)
class Cell:
    """One activation to patch: point z (a head's output) or a stream point; head and position None for all."""

    point: str  # "z", "resid_pre", "attn_out", "mlp_out"
    kind: str  # the attention kind (z, attn_out) or stack (resid_pre, mlp_out)
    layer: int
    head: int | None = None
    position: int | None = None

    @property
    def key(self) -> tuple:
        """Where it is among the model's places: (kind, layer) for z, else (point, kind, layer)."""
        return (self.kind, self.layer) if self.point == "z" else (self.point, self.kind, self.layer)


@dataclass(frozen=True)
class PatchSpec:
    """What a request asks: the two texts, the metric, what to patch, which way."""

    clean: str
    corrupted: str
    answer: str | None = None
    wrong: str | None = None
    metric: Metric | None = None  # None: logit_diff for a model that predicts tokens, embedding_cosine for an encoder
    patch: Mode = "heads"
    direction: Direction = "denoise"
    step: int | None = None  # encoder–decoders: the output step whose token is the answer


def one_token(model: AttentionModel, text: str | None, field: str) -> dict:
    """{text, id, token} of a text that must be one token of the model's output (metric_choice.one_token, whose
    refusal is said as CannotPatch)."""
    try:
        return metric_choice.one_token(model, text, field).describe()
    except BadMetric as e:
        raise CannotPatch(e.code, str(e), **e.extra) from None


@torch.no_grad()
def top_predictions(model: AttentionModel, text: str, k: int) -> dict:
    """A causal LM's k most probable next tokens after the text (what the page proposes as answer and wrong):
    {model, tokens, where, predictions: [{id, token, text, prob}]}, by descending probability. `text` is what
    `answer`/`wrong` take for that token (None when no text reads back to it alone). CannotPatch for other models."""
    info = model.info
    if info.generation != "continuation":
        raise CannotPatch("no_metric", f"{info.name} is not a causal LM: predictions of the next token are for models "
                          "that continue a text", field="model")
    cut_to_chars(info, text, truncate=False)
    prepared = model.prepare(text, new_tokens=0)
    probs = model.forward([prepared])[0].next_logits.float().softmax(-1)  # (V,)
    top = probs.topk(min(k, probs.shape[0]))
    ids = top.indices.tolist()
    tokens = model.id_tokens(ids)
    return {"model": info.name, "tokens": prepared.fields["tokens"], "where": metric_choice.LAST_POSITION,
            "predictions": [{"id": i, "token": t, "text": model.id_text(i), "prob": p}
                            for i, t, p in zip(ids, tokens, top.values.tolist(), strict=True)]}


class Experiment:
    """A clean and a corrupted run of one model, prepared and recorded: the metric of each, the activations of
    each at every place, and `evaluate` to run the receiving prompt with any cells patched."""

    def __init__(self, model: AttentionModel, spec: PatchSpec, points: tuple[str, ...] | None = None):
        self.model, self.spec = model, spec
        info = model.info
        if spec.patch not in MODES:
            raise CannotPatch("validation_error", f"patch must be one of {', '.join(MODES)}", field="patch")
        if spec.direction not in DIRECTIONS:
            raise CannotPatch("validation_error", f"direction must be one of {', '.join(DIRECTIONS)}",
                              field="direction")
        self.metric = spec.metric or ("embedding_cosine" if info.generation is None else "logit_diff")
        self.check_metric()
        try:
            self.modules = model.attention_modules()
            self.points = model.hook_points()
        except NotImplementedError as e:
            raise CannotPatch("not_patchable", f"patching needs {info.name}'s activations one by one: {e}") from None
        for text in (spec.clean, spec.corrupted):
            cut_to_chars(info, text, truncate=False)  # TooManyCharacters before any tokenizing
        with torch.no_grad():
            clean, corrupted = model.prepare(spec.clean, new_tokens=0 if info.generation == "continuation" else None), \
                model.prepare(spec.corrupted, new_tokens=0 if info.generation == "continuation" else None)
        self.clean_tokens, self.corrupted_tokens = clean.fields["tokens"], corrupted.fields["tokens"]
        if len(self.clean_tokens) != len(self.corrupted_tokens):
            raise CannotPatch("token_count_mismatch", f"clean is {len(self.clean_tokens)} tokens and corrupted "
                              f"{len(self.corrupted_tokens)} for {info.name}; patching needs the same number, so that "
                              "position i means the same in both", clean_tokens=self.clean_tokens,
                              corrupted_tokens=self.corrupted_tokens)
        self.step = None
        if info.generation == "output":  # both read the clean output, teacher-forced: only the input differs
            self.step = self.choose_step(clean, corrupted)
            corrupted = model.with_output(corrupted, clean)
        self.answer = one_token(model, spec.answer, "answer") if self.metric != "embedding_cosine" else None
        self.wrong = one_token(model, spec.wrong, "wrong") if self.metric == "logit_diff" else None
        self.prepared = {"clean": clean, "corrupted": corrupted}
        wanted = points or {"heads": ("z",), "head_positions": ("z",), "residual": ("resid_pre",),
                            "layers": ("attn_out", "mlp_out")}[spec.patch]
        self.places = {**{key: m for key, m in self.modules.items() if "z" in wanted},
                       **{key: p for key, p in self.points.items() if key[0] in wanted}}
        self.reference = None
        self.record, self.value = {}, {}
        for name in ("clean", "corrupted"):  # the clean run first: its embedding is the cosine's reference
            with torch.no_grad(), capturing(self.places) as records:
                out = model.forward([self.prepared[name]])[0]
            if self.reference is None and self.metric == "embedding_cosine":
                self.reference = out.hidden.float().mean(0)  # (C,)
            self.value[name] = self.metric_of(out)
            self.record[name] = {key: calls[-1]["z" if len(key) == 2 else "x"] for key, calls in records.items()}
        source = "clean" if spec.direction == "denoise" else "corrupted"
        self.source, self.receiver = self.record[source], self.prepared["corrupted" if source == "clean" else "clean"]

    def check_metric(self) -> None:
        info, spec = self.model.info, self.spec
        if self.metric not in METRICS:
            raise CannotPatch("validation_error", f"metric must be one of {', '.join(METRICS)}", field="metric")
        if info.generation is None and self.metric != "embedding_cosine":
            raise CannotPatch("not_patchable", f"{info.name} is an encoder: it predicts no token, so {self.metric} "
                              "has no meaning; use metric embedding_cosine (the default for encoders)", field="metric")
        if info.generation is not None and self.metric == "embedding_cosine":
            raise CannotPatch("not_patchable", f"{info.name} predicts tokens: embedding_cosine is for encoders; use "
                              "logit_diff or prob", field="metric")
        if info.generation is None and (spec.answer is not None or spec.wrong is not None):
            raise CannotPatch("not_patchable", f"{info.name} is an encoder: it predicts no token, so answer and wrong "
                              "have no meaning; leave them out", field="answer" if spec.answer is not None else "wrong")
        if info.generation != "output" and spec.step is not None:
            raise CannotPatch("not_patchable", f"{info.name} does not write an output: step is for encoder-decoder "
                              "models (a causal LM's answer is the token after the last)", field="step")

    def choose_step(self, clean, corrupted) -> int:
        """The step asked for, or the first output step where the clean and corrupted greedy outputs differ (0 when
        they do not differ)."""
        steps = len(clean.targets)
        if self.spec.step is not None:
            if not 0 <= self.spec.step < steps:
                raise CannotPatch("out_of_range", f"step {self.spec.step} is out of range: the clean output has "
                                  f"{steps} steps (0..{steps - 1})", field="step", valid=[0, steps - 1])
            return self.spec.step
        return next((i for i, (a, b) in enumerate(zip(clean.targets, corrupted.targets)) if a != b), 0)

    # --- the metric --------------------------------------------------------------------------------------------

    def metric_of(self, out) -> float:
        """The metric of one run's Outputs."""
        if self.metric == "embedding_cosine":
            embedding = out.hidden.float().mean(0)  # (C,)
            return torch.nn.functional.cosine_similarity(embedding, self.reference, dim=0).item()
        logits = (out.next_logits if self.step is None else out.logits[self.step]).float()  # (V,)
        if self.metric == "prob":
            return logits.softmax(-1)[self.answer["id"]].item()
        return (logits[self.answer["id"]] - logits[self.wrong["id"]]).item()

    # --- cells -------------------------------------------------------------------------------------------------

    def positions(self, kind: str) -> int:
        """How many positions the kind's rows have (its query tokens: the input or the decoder's positions)."""
        axis = self.model.info.kinds[kind].rows
        return len(self.clean_tokens) if axis == "tokens" else len(self.prepared["clean"].targets)

    def cells(self) -> list[Cell]:
        """Every cell of the request's patch mode, map by map."""
        mode, H = self.spec.patch, self.model.info.heads
        if mode == "heads":
            return [Cell("z", kind, layer, h) for kind, layer in self.modules for h in range(H)]
        if mode == "head_positions":
            return [Cell("z", kind, layer, h, p) for kind, layer in self.modules for h in range(H)
                    for p in range(self.positions(kind))]
        points = ("resid_pre",) if mode == "residual" else ("attn_out", "mlp_out")
        keys = [key for point in points for key in self.points if key[0] == point]
        return [Cell(point, kind, layer, None, p) for point, kind, layer in keys for p in range(self.positions(kind))]

    def edit(self, cell: Cell, row: int | None) -> HeadEdit | StreamEdit:
        positions = None if cell.position is None else (cell.position,)
        rows = None if row is None else (row,)
        value = self.source[cell.key]
        if cell.point == "z":
            heads = tuple(range(self.model.info.heads)) if cell.head is None else (cell.head,)
            return HeadEdit(cell.kind, cell.layer, heads, "replace", positions, rows, value)
        return StreamEdit(cell.point, cell.kind, cell.layer, value, positions, rows)

    @torch.no_grad()
    def evaluate(self, groups: list[list[Cell]]) -> list[float]:
        """The metric of the receiving prompt with each group of cells patched together, one batch row per group:
        one forward pass."""
        edits = [self.edit(cell, row) for row, group in enumerate(groups) for cell in group]
        with editing({**self.modules, **self.points}, edits):
            outs = self.model.forward([self.receiver] * len(groups))
        return [self.metric_of(out) for out in outs]

    def rows_per_pass(self) -> int:
        prepared = self.receiver
        T = len(prepared.fields["tokens"]) + len(prepared.targets if self.step is not None else ())
        return max(1, min(BATCH_ROWS, BATCH_POSITIONS // max(T, 1)))

    def work(self, cells: int) -> int:
        """Positions run: (cells + the two recorded runs) x the prompt's positions (input and decoder)."""
        T = len(self.clean_tokens) + (len(self.prepared["clean"].targets) if self.step is not None else 0)
        return (cells + 2) * T

    # --- the answer --------------------------------------------------------------------------------------------

    def recovery(self, patched: float) -> float | None:
        clean, corrupted = self.value["clean"], self.value["corrupted"]
        return None if abs(clean - corrupted) < SAME else (patched - corrupted) / (clean - corrupted)

    def maps(self, cells: list[Cell], values: list[float]) -> list[dict]:
        """The cells' metrics as one map per (point, kind), shaped as its dims say."""
        grouped: dict[tuple[str, str], list[tuple[Cell, float]]] = {}
        for cell, value in zip(cells, values, strict=True):
            grouped.setdefault((cell.point, cell.kind), []).append((cell, value))
        out = []
        for (point, kind), items in grouped.items():
            layers = max(c.layer for c, _ in items) + 1
            axis = self.model.info.kinds[kind].rows
            tokens = self.clean_tokens if axis == "tokens" else self.prepared["clean"].fields["output_tokens"]
            if point == "z" and self.spec.patch == "heads":
                dims = ["layer", "head"]
            elif point == "z":
                dims = ["layer", "head", "position"]
            else:
                dims = ["layer", "position"]
            sizes = {"layer": layers, "head": self.model.info.heads, "position": self.positions(kind)}
            patched, recovery = nested([sizes[d] for d in dims]), nested([sizes[d] for d in dims])
            for cell, value in items:
                index = [{"layer": cell.layer, "head": cell.head, "position": cell.position}[d] for d in dims]
                put(patched, index, value)
                put(recovery, index, self.recovery(value))
            labels = {"layer": [f"L{i}" for i in range(layers)], "head": [f"H{h}" for h in range(sizes["head"])],
                      "position": list(tokens[: sizes["position"]])}
            out.append({"name": f"{kind}.{point}", "point": point, "kind": kind, "dims": dims,
                        "labels": {d: labels[d] for d in dims}, "position_axis": axis if "position" in dims else None,
                        "patched": patched, "recovery": recovery})
        return out

    def result(self, cells: list[Cell], values: list[float], passes: int) -> dict:
        info, spec = self.model.info, self.spec
        name, units, _ = METRIC_ABOUT[self.metric]
        clean, corrupted = self.value["clean"], self.value["corrupted"]
        where = (LAST_POSITION if info.generation == "continuation"
                 else None if self.step is None else f"output step {self.step}, teacher-forced on the clean output")
        return {
            "model": info.name,
            "clean": {"text": spec.clean, "tokens": self.clean_tokens},
            "corrupted": {"text": spec.corrupted, "tokens": self.corrupted_tokens},
            "output_tokens": self.prepared["clean"].fields.get("output_tokens") if self.step is not None else None,
            "step": self.step,
            "metric": {"name": self.metric, "description": name, "units": units, "where": where,
                       "answer": self.answer, "wrong": self.wrong},
            "patch": spec.patch,
            "direction": spec.direction,
            "direction_about": DIRECTION_ABOUT[spec.direction],
            "clean_metric": clean,
            "corrupted_metric": corrupted,
            "recovery_formula": RECOVERY,
            "recovery_note": None if abs(clean - corrupted) >= SAME else
            "clean and corrupted give the same metric: there is no difference to recover, so recovery is null",
            "maps": self.maps(cells, values),
            "cells": len(cells),
            "forward_passes": 2 + passes,
        }


def patching_steps(model: AttentionModel, spec: PatchSpec, max_work: int | None = None,
                   rows: int | None = None) -> Iterator[dict]:
    """The whole experiment, one forward pass per step: yields {"done", "total"} (cells) after the two recorded runs
    and after each batch of cells, then {"result": ...}. The first step prepares and checks everything (CannotPatch,
    TooManyTokens, TooManyCharacters). max_work: the most positions to run (cells x tokens, `Experiment.work`);
    rows: cells per pass (None: as many as BATCH_ROWS and BATCH_POSITIONS allow)."""
    experiment = Experiment(model, spec)
    cells = experiment.cells()
    work = experiment.work(len(cells))
    if max_work is not None and work > max_work:
        raise CannotPatch("too_much_work", f"patching {spec.patch} of {model.info.name} on these prompts runs "
                          f"{len(cells)} cells x {work // (len(cells) + 2)} positions = {work} positions; the limit is "
                          f"{max_work} (patch_max_work in GET /api/models limits): use shorter prompts or patch heads",
                          count=work, limit=max_work)
    yield {"done": 0, "total": len(cells)}
    size = rows or experiment.rows_per_pass()
    values: list[float] = []
    passes = 0
    for start in range(0, len(cells), size):
        values += experiment.evaluate([[cell] for cell in cells[start: start + size]])
        passes += 1
        yield {"done": len(values), "total": len(cells)}
    yield {"result": experiment.result(cells, values, passes)}


def activation_patching(model: AttentionModel, spec: PatchSpec, max_work: int | None = None,
                        progress: Callable[[int, int], None] | None = None, rows: int | None = None) -> dict:
    """Run `patching_steps` to the end; progress(done, total) after every step."""
    for event in patching_steps(model, spec, max_work, rows):
        if "result" in event:
            return event["result"]
        if progress is not None:
            progress(event["done"], event["total"])
    raise RuntimeError("patching_steps ended without a result")


def nested(sizes: list[int]) -> list:
    """A nested list of None shaped `sizes`."""
    return [None] * sizes[0] if len(sizes) == 1 else [nested(sizes[1:]) for _ in range(sizes[0])]


def put(array: list, index: list[int], value) -> None:
    for i in index[:-1]:
        array = array[i]
    array[index[-1]] = value
