"""Per-head summaries of an Analysis: metrics and roles, head similarity, corpus averages.

The formulas live in model/metrics.py and the role rules in model/roles.py; this module
applies them to every attention kind of an Analysis and shapes the results as records.
"""

import math

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


class CorpusAverage:
    """Running per-head means of every metric over many analyses (NaN values are left out)."""

    def __init__(self):
        self.sums: dict[str, dict[str, torch.Tensor]] = {}  # kind -> metric -> (L, H)
        self.counts: dict[str, dict[str, torch.Tensor]] = {}
        self.keys: dict[str, int] = {}  # kind -> key positions, summed over sentences
        self.sentences = 0

    def add(self, analysis: Analysis) -> None:
        self.sentences += 1
        for kind, pattern in analysis.patterns.items():
            self.keys[kind] = self.keys.get(kind, 0) + pattern.shape[-1]
            metrics = kind_metrics(analysis, kind)
            sums = self.sums.setdefault(kind, {})
            counts = self.counts.setdefault(kind, {})
            for name, value in metrics.items():  # (L, H)
                defined = ~torch.isnan(value)
                sums[name] = sums.get(name, 0) + torch.where(defined, value.double(), 0.0)
                counts[name] = counts.get(name, 0) + defined

    def means(self) -> dict[str, dict[str, torch.Tensor]]:
        """kind -> metric -> (L, H) mean over the sentences where it is defined (NaN if none)."""
        return {
            kind: {name: (self.sums[kind][name] / self.counts[kind][name]).float() for name in self.sums[kind]}
            for kind in self.sums
        }

    def summary(self) -> dict[str, list[dict]]:
        """kind -> a record per head with its mean metrics and the roles of those means."""
        return {kind: head_records(metrics, self.keys[kind] / self.sentences) for kind, metrics in self.means().items()}

    def add_batch(self, model, texts: list[str], truncate: bool = False) -> None:
        """Run texts through `model` together and add each one."""
        analyses = model.analyze_batch(texts, truncate=truncate)
        if len(analyses) != len(texts):
            raise RuntimeError(f"{model.info.name} returned {len(analyses)} analyses for {len(texts)} texts")
        for analysis in analyses:
            self.add(analysis)


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
