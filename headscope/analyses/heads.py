"""Per-head summaries of an Analysis: metrics and roles, head similarity, corpus sums, means, spreads and shares.

The formulas live in headscope/analyses/metrics.py and the role rules in headscope/analyses/roles.py; this module
applies them to every attention kind of an Analysis and shapes the results as records.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from headscope.analyses.metrics import (
    METRICS,
    cluster_order,
    distances_from_affinity,
    head_affinity,
    head_distances,
    head_metrics,
    kept_keys,
)
from headscope.analyses.roles import ROLES, head_roles, role_passes
from headscope.models.analysis import Analysis, TooManyCharacters, cut_to_chars


def head_name(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


def axis_special(analysis: Analysis, name: str) -> list[bool]:
    """The special flags of the token list a layout names; all False where the model gives none."""
    flags = analysis.special if name == "tokens" else analysis.output_special
    return list(flags) if flags is not None else [False] * len(analysis.axis(name))


# Sinks that are not special tokens, measured (Xiao et al. 2023): a model with no BOS or [CLS] parks attention on
# its first text token instead, and metrics that remove only special tokens then call most heads first_token heads.
# A text key is a sink where the kind's heads, on average, put at least this share of the weight of the text
# queries after it (two at least) on it. Measured on seeded repeated words and natural sentences: SmolLM2's first
# token 0.47-0.79 (it has no BOS); the largest share of any text key in MiniLM 0.17, in our induction model 0.22.
SINK_SHARE = 0.4


def measured_sinks(analysis: Analysis, kind: str) -> list[int]:
    """The key positions of a self-attention kind treated as sinks although not special tokens (see SINK_SHARE);
    none for a kind whose rows and columns are different sequences."""
    layout = analysis.layout[kind]
    if layout.rows != layout.columns:
        return []
    special = torch.tensor(axis_special(analysis, layout.columns), dtype=torch.bool)  # (T,)
    pattern = analysis.patterns[kind]  # (L, H, T, T)
    T = pattern.shape[-1]
    later = torch.ones(T, T, dtype=torch.bool).tril(-1) & ~special[:, None]  # (Tq, Tk): text query i after key j
    counts = later.sum(0)  # (Tk,)
    # the mean over every head of the kind of the weight on key j from those queries; the mean over heads first
    # (it commutes with the masked sum): one pass over the weights, no (L, H, T, T) temporary
    share = (pattern.float().mean((0, 1)) * later).sum(0) / counts.clamp(min=1)  # (Tk,)
    return [j for j in range(T) if not special[j] and counts[j] >= 2 and share[j] >= SINK_SHARE]


def sink_flags(analysis: Analysis, kind: str, name: str, sinks: list[int] | None = None) -> list[bool]:
    """The token list `name`'s flags of what the kind's metrics treat as sinks: special tokens, and for a
    self-attention kind the measured sinks too (`sinks`: measured_sinks, when already known)."""
    flags = axis_special(analysis, name)
    for j in measured_sinks(analysis, kind) if sinks is None else sinks:
        flags[j] = True
    return flags


def kind_sinks(analysis: Analysis) -> dict[str, list[int]]:
    """kind -> the text positions its metrics treated as sinks besides special tokens (say so in every answer)."""
    return {kind: measured_sinks(analysis, kind) for kind in analysis.patterns}


def kind_metrics(analysis: Analysis, kind: str) -> dict[str, torch.Tensor]:
    """Every metric for every head of one kind: name -> (L, H), with special tokens and measured sinks as sinks."""
    pattern = analysis.patterns[kind]  # (L, H, Tq, Tk)
    layout = analysis.layout[kind]
    queries, keys = analysis.axis(layout.rows), analysis.axis(layout.columns)
    sinks = measured_sinks(analysis, kind)  # once for both axes
    return head_metrics(pattern, queries, keys, causal=layout.causal, same_sequence=layout.rows == layout.columns,
                        query_special=sink_flags(analysis, kind, layout.rows, sinks),
                        key_special=sink_flags(analysis, kind, layout.columns, sinks))


def kind_keys(analysis: Analysis, kind: str) -> int:
    """The key positions of a kind that are not sinks: the token count its roles are judged by."""
    columns = analysis.layout[kind].columns
    return kept_keys(sink_flags(analysis, kind, columns), len(analysis.axis(columns)))


def head_records(metrics: dict[str, torch.Tensor], num_tokens: float) -> list[dict]:
    """(L, H) metric tensors -> one record per head: layer, head, name, metrics (None if undefined), roles.

    num_tokens: non-special key positions of the kind (or their mean over a corpus), for the role rules.
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
                    "metrics": {k: none_if_nan(v) for k, v in values.items()},
                    "roles": roles[layer][head],
                }
            )
    return records


def none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def summarize_heads(analysis: Analysis) -> dict[str, list[dict]]:
    """kind -> a record per head with its metrics and roles on this one text."""
    return {kind: head_records(kind_metrics(analysis, kind), kind_keys(analysis, kind)) for kind in analysis.patterns}


def similarity_record(distance: torch.Tensor, L: int, H: int) -> dict:
    """A distance matrix (N, N) of L x H heads as the API sends it: head names, distances, clustering order."""
    return {
        "heads": [head_name(layer, head) for layer in range(L) for head in range(H)],
        "distance": distance.tolist(),
        "order": cluster_order(distance),
    }


def head_similarity(analysis: Analysis) -> dict[str, dict]:
    """kind -> the head-by-head Hellinger distance matrix and its clustering order (raw attention)."""
    out = {}
    for kind, pattern in analysis.patterns.items():
        L, H, Tq, Tk = pattern.shape
        out[kind] = similarity_record(head_distances(pattern.reshape(L * H, Tq, Tk)), L, H)  # (N, N)
    return out


@dataclass
class Sums:
    """Per-head sums over sentences, to be turned into means, spreads and shares at the end.

    Plain data that adds up with `+` (`merge`): sums of different batches, processes or machines
    combine in any order into the sums of all their sentences. Per kind:
      keys      non-special key positions, summed over sentences (for the roles of the means)
      totals    metric -> (L, H) sum of its values, float64, NaN (undefined) values left out
      squares   metric -> (L, H) sum of their squares, float64
      counts    metric -> (L, H) sentences where it is defined, int64
      fired     role -> (L, H) sentences on which the head had the role, int64
      affinity  (N, N) sum over every query row of every sentence of the Bhattacharyya coefficient
                of two heads (metrics.head_affinity), float64;  rows: those rows' number
    """

    sentences: int = 0
    keys: dict[str, int] = field(default_factory=dict)
    totals: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    squares: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    counts: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    fired: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    affinity: dict[str, torch.Tensor] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    def __add__(self, other: "Sums") -> "Sums":
        nested = ("totals", "squares", "counts", "fired")
        return Sums(
            self.sentences + other.sentences,
            _add(self.keys, other.keys),
            *({kind: _add(getattr(self, name).get(kind, {}), getattr(other, name).get(kind, {}))
               for kind in getattr(self, name) | getattr(other, name)} for name in nested),
            _add(self.affinity, other.affinity),
            _add(self.rows, other.rows),
        )

    merge = __add__

    def means(self) -> dict[str, dict[str, torch.Tensor]]:
        """kind -> metric -> (L, H) mean over the sentences where it is defined (NaN if none)."""
        return {kind: {name: (total / self.counts[kind][name]).float() for name, total in metrics.items()}
                for kind, metrics in self.totals.items()}

    def stds(self) -> dict[str, dict[str, torch.Tensor]]:
        """kind -> metric -> (L, H) standard deviation over the sentences where it is defined (divides by n;
        NaN if none): sqrt(mean of squares - square of the mean)."""
        out = {}
        for kind, metrics in self.totals.items():
            out[kind] = {}
            for name, total in metrics.items():
                n = self.counts[kind][name]  # (L, H)
                mean = total / n
                out[kind][name] = (self.squares[kind][name] / n - mean * mean).clamp(min=0).sqrt().float()
        return out

    def summary(self) -> dict[str, list[dict]]:
        """kind -> a record per head: mean metrics and the roles of those means, plus `std` and `n` per
        metric and `role_share`, the share of sentences on which each role fired."""
        means, stds = self.means(), self.stds()
        out = {}
        for kind, metrics in means.items():
            records = head_records(metrics, self.keys[kind] / self.sentences)
            std = {name: value.tolist() for name, value in stds[kind].items()}
            n = {name: value.tolist() for name, value in self.counts[kind].items()}
            fired = {role: value.tolist() for role, value in self.fired[kind].items()}
            for r in records:
                layer, head = r["layer"], r["head"]
                r["std"] = {name: none_if_nan(std[name][layer][head]) for name in METRICS}
                r["n"] = {name: n[name][layer][head] for name in METRICS}
                r["role_share"] = {role: fired[role][layer][head] / self.sentences for role in ROLES}
            out[kind] = records
        return out

    def similarity(self) -> dict[str, dict]:
        """kind -> the corpus's head-by-head Hellinger distance (root mean square over every query row of
        every sentence, raw attention) and its clustering order."""
        out = {}
        for kind, affinity in self.affinity.items():
            L, H = next(iter(self.totals[kind].values())).shape
            out[kind] = similarity_record(distances_from_affinity(affinity, self.rows[kind]), L, H)
        return out


def _add(a: dict, b: dict) -> dict:
    """Key by key sum of two dicts; a key that only one has keeps its value."""
    return {k: a[k] + b[k] if k in a and k in b else a.get(k, b.get(k)) for k in a | b}


def analysis_sums(analysis: Analysis) -> Sums:
    """The Sums of one analysed text."""
    sums = Sums(1)
    for kind, pattern in analysis.patterns.items():
        L, H, Tq, Tk = pattern.shape
        metrics = kind_metrics(analysis, kind)  # name -> (L, H)
        keys = kind_keys(analysis, kind)
        defined = {name: ~torch.isnan(value) for name, value in metrics.items()}
        values = {name: torch.where(defined[name], value.double(), 0.0) for name, value in metrics.items()}
        passes = role_passes(metrics, keys)  # role -> (L, H) bool
        sums.keys[kind] = keys
        sums.totals[kind] = values
        sums.squares[kind] = {name: value * value for name, value in values.items()}
        sums.counts[kind] = {name: d.long() for name, d in defined.items()}
        sums.fired[kind] = {role: passes[role].long() for role in ROLES}
        sums.affinity[kind] = head_affinity(pattern.reshape(L * H, Tq, Tk))  # (N, N)
        sums.rows[kind] = Tq
    return sums


def corpus_sums(model, texts: list[str], truncate: bool = False) -> Sums:
    """Run texts through `model` together (one batch) and sum the per-head metrics of each.

    The one place the corpus statistics are computed: the CLI, /api/corpus and the Ray engine call it.
    """
    analyses = model.analyze_batch(texts, truncate=truncate)
    if len(analyses) != len(texts):
        raise RuntimeError(f"{model.info.name} returned {len(analyses)} analyses for {len(texts)} texts")
    return sum(map(analysis_sums, analyses), Sums())


BATCH_TOKENS = 1024  # padded tokens (texts x the longest) per batch of many texts: bounds its memory and its time


def padded_batches(sentences: list[tuple[str, int]], size: int, padded_tokens: int) -> list[list[str]]:
    """Runs of (sentence, tokens), in the order given (sort them by tokens first), of at most `size` sentences and
    at most `padded_tokens` tokens once padded to the longest (which bounds the batch's attention memory and its
    time on the model), but never less than one sentence."""
    out, batch, longest = [], [], 0
    for sentence, count in sentences:
        if batch and (len(batch) == size or max(longest, count) * (len(batch) + 1) > padded_tokens):
            out.append(batch)
            batch, longest = [], 0
        batch.append(sentence)
        longest = max(longest, count)
    return out + [batch] if batch else out


def plan_corpus(model, texts: list[str], truncate: bool, batch_size: int,
                padded_tokens: int = BATCH_TOKENS) -> tuple[list[list[str]], list[dict], int]:
    """Split texts into batches of similar length (at most batch_size texts and padded_tokens padded tokens
    each), and report the ones that cannot run.

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
        usable.append((text, min(count, limit)))
        tokens += min(count, limit)
    usable.sort(key=lambda item: item[1])  # similar lengths together: less padding
    return padded_batches(usable, batch_size, padded_tokens), errors, tokens


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
