"""Per-head summaries of an Analysis: metrics and roles, head similarity, corpus sums and averages.

The formulas live in model/metrics.py and the role rules in model/roles.py; this module
applies them to every attention kind of an Analysis and shapes the results as records.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from model.analysis import Analysis, TooManyCharacters, cut_to_chars
from model.metrics import METRICS, cluster_order, head_distances, head_metrics
from model.roles import head_roles


def head_name(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


def kind_metrics(analysis: Analysis, kind: str) -> dict[str, torch.Tensor]:
    """Every metric for every head of one kind: name -> (L, H)."""
    pattern = analysis.patterns[kind]  # (L, H, Tq, Tk)
    layout = analysis.layout[kind]
    queries, keys = analysis.axis(layout.rows), analysis.axis(layout.columns)
    return head_metrics(pattern, queries, keys, causal=layout.causal, same_sequence=layout.rows == layout.columns)


def head_records(metrics: dict[str, torch.Tensor], num_tokens: float) -> list[dict]:
    """(L, H) metric tensors -> one record per head: layer, head, name, metrics (None if undefined), roles.

    num_tokens: key positions of the kind (or their mean over a corpus), for the per-token role rules.
    """
    roles = head_roles(metrics, num_tokens)
    L, H = metrics[METRICS[0]].shape
    table = {name: metrics[name].tolist() for name in METRICS}  # name -> [layer][head] floats
    records = []
    for layer in range(L):
        for head in range(H):
            values = {name: table[name][layer][head] for name in METRICS}
            records.append(
                {
                    "layer": layer,
                    "head": head,
                    "name": head_name(layer, head),
                    "metrics": {k: None if math.isnan(v) else v for k, v in values.items()},
                    "roles": roles[layer][head],
                }
            )
    return records


def summarize_heads(analysis: Analysis) -> dict[str, list[dict]]:
    """kind -> a record per head with its metrics and roles on this one text."""
    return {kind: head_records(kind_metrics(analysis, kind), pattern.shape[-1])
            for kind, pattern in analysis.patterns.items()}


def head_similarity(analysis: Analysis) -> dict[str, dict]:
    """kind -> the head-by-head Hellinger distance matrix and its clustering order."""
    out = {}
    for kind, pattern in analysis.patterns.items():
        L, H, Tq, Tk = pattern.shape
        distance = head_distances(pattern.reshape(L * H, Tq, Tk))  # (N, N)
        out[kind] = {
            "heads": [head_name(layer, head) for layer in range(L) for head in range(H)],
            "distance": distance.tolist(),
            "order": cluster_order(distance),
        }
    return out


@dataclass
class Sums:
    """Per-head sums of every metric over sentences, to be averaged at the end (NaN values are left out).

    Plain data that adds up with `+` (`merge`): sums of different batches, processes or machines
    combine in any order into the sums of all their sentences.
    """

    sentences: int = 0
    keys: dict[str, int] = field(default_factory=dict)  # kind -> key positions, summed over sentences
    totals: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # kind -> metric -> (L, H) float64
    counts: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # kind -> metric -> (L, H) int64

    def __add__(self, other: "Sums") -> "Sums":
        return Sums(
            self.sentences + other.sentences,
            _add(self.keys, other.keys),
            {kind: _add(self.totals.get(kind, {}), other.totals.get(kind, {})) for kind in self.totals | other.totals},
            {kind: _add(self.counts.get(kind, {}), other.counts.get(kind, {})) for kind in self.counts | other.counts},
        )

    merge = __add__

    def means(self) -> dict[str, dict[str, torch.Tensor]]:
        """kind -> metric -> (L, H) mean over the sentences where it is defined (NaN if none)."""
        return {kind: {name: (total / self.counts[kind][name]).float() for name, total in metrics.items()}
                for kind, metrics in self.totals.items()}

    def summary(self) -> dict[str, list[dict]]:
        """kind -> a record per head with its mean metrics and the roles of those means."""
        return {kind: head_records(metrics, self.keys[kind] / self.sentences) for kind, metrics in self.means().items()}


def _add(a: dict, b: dict) -> dict:
    """Key by key sum of two dicts; a key that only one has keeps its value."""
    return {k: a[k] + b[k] if k in a and k in b else a.get(k, b.get(k)) for k in a | b}


def analysis_sums(analysis: Analysis) -> Sums:
    """The Sums of one analysed text."""
    totals, counts = {}, {}
    for kind in analysis.patterns:
        metrics = kind_metrics(analysis, kind)  # name -> (L, H)
        defined = {name: ~torch.isnan(value) for name, value in metrics.items()}
        totals[kind] = {name: torch.where(defined[name], value.double(), 0.0) for name, value in metrics.items()}
        counts[kind] = {name: d.long() for name, d in defined.items()}
    keys = {kind: pattern.shape[-1] for kind, pattern in analysis.patterns.items()}
    return Sums(1, keys, totals, counts)


def corpus_sums(model, texts: list[str], truncate: bool = False) -> Sums:
    """Run texts through `model` together (one batch) and sum the per-head metrics of each.

    The one place the corpus statistics are computed: the CLI, /api/corpus and the Ray engine call it.
    """
    analyses = model.analyze_batch(texts, truncate=truncate)
    if len(analyses) != len(texts):
        raise RuntimeError(f"{model.info.name} returned {len(analyses)} analyses for {len(texts)} texts")
    return sum(map(analysis_sums, analyses), Sums())


def plan_corpus(model, texts: list[str], truncate: bool, batch_size: int) -> tuple[list[list[str]], list[dict], int]:
    """Split texts into batches of similar length, and report the ones that cannot run.

    Returns (batches, errors as {"index", "error"}, tokens in the usable texts).
    """
    usable, errors, tokens = [], [], 0
    limit = model.info.max_tokens
    for i, text in enumerate(texts):
        if not text.strip():
            errors.append({"index": i, "error": "text is empty or only whitespace"})
            continue
        try:
            text, _ = cut_to_chars(model.info, text, truncate)  # before tokenizing: bounds its cost
        except TooManyCharacters as e:
            errors.append({"index": i, "error": str(e)})
            continue
        try:
            count = model.count_tokens(text)
        except Exception as e:  # text the tokenizer cannot read is reported, not fatal
            errors.append({"index": i, "error": f"cannot tokenize: {e}"})
            continue
        if count > limit and not truncate:
            errors.append({"index": i, "error": f"text has {count} tokens but {model.info.name} takes at most {limit}"})
            continue
        usable.append(text)
        tokens += min(count, limit)
    usable.sort(key=len)  # similar lengths together: less padding
    return [usable[i : i + batch_size] for i in range(0, len(usable), batch_size)], errors, tokens


def lines_sums(model, lines: list[str], numbers: list[int], truncate: bool, batch_size: int,
               progress: Callable[[int], object] = lambda done: None) -> tuple[Sums, list[dict]]:
    """The Sums of the lines of a text file, or of a run of them, and the lines that were skipped.

    numbers: each line's 1-based number in its file, for the report `{"line", "error"}`.
    Blank lines are left out without a report: in a file they are no mistake.
    progress(n) is called as n more lines are done (skipped ones at once, the rest batch by batch).
    Both corpus engines run this: the local one over the whole file, the Ray one over each block.
    """
    batches, errors, _ = plan_corpus(model, lines, truncate, batch_size)
    skipped = [{"line": numbers[e["index"]], "error": e["error"]} for e in errors if lines[e["index"]].strip()]
    progress(len(errors))
    sums = Sums()
    for batch in batches:
        sums += corpus_sums(model, batch, truncate)
        progress(len(batch))
    return sums, skipped
