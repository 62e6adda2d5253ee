"""Heads found the standard way: each head scored against an ideal pattern on seeded synthetic inputs.

As TransformerLens' `detect_head` and Olsson et al. 2022 do, a head's score for a detector is the mean, over the
query rows the detector judges, of the attention weight the head puts where the detector says it should look:

  previous_token   natural text (sentences of headscope/data/varied_texts.py): the weight from token i on token
                   i - 1, over every query i whose previous token is a text token
  duplicate_token  a random sequence of words written twice: the weight from a token of the second copy on the
                   same token in the first copy (i - n, n = the copy's length in tokens)
  induction        the same sequences: the weight from a token of the second copy on the token that followed its
                   first occurrence (i - n + 1): "what came after me last time"

The random sequences are words drawn with `random.Random(seed)` from the natural texts' own words, so that each is
a word the model's tokenizer reads (and a byte-level model reads as bytes); a sequence counts only if its second
copy tokenizes exactly as its first. The answer lists every input and the seed, so that anyone can rerun them.
Scores run over every self-attention kind whose rows and columns are the same tokens (an encoder's, a decoder's
causal self-attention); they lie in [0, 1], 1 being the ideal pattern exactly.
"""

import random
import re

import torch

from headscope.data.varied_texts import VARIED_TEXTS

DETECTORS = {
    "previous_token": "weight on the previous token (natural text)",
    "duplicate_token": "weight on the earlier copy of the same token (random words written twice)",
    "induction": "weight on the token after the earlier copy of the same token (random words written twice)",
}
DEFAULT_SEED = 0
DEFAULT_SEQUENCES = 10  # random sequences written twice
DEFAULT_WORDS = 20  # words per copy, fewer where the model takes fewer tokens
DEFAULT_NATURAL = 12  # natural sentences for previous_token
THRESHOLD = 0.5  # a head whose score reaches it is named in `found`


class NotDetectable(ValueError):
    """The model has no self-attention over its input tokens."""


def word_pool() -> list[str]:
    """The distinct lowercase words of the natural texts, in a fixed order."""
    words = {w for text in VARIED_TEXTS for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 1}
    return sorted(words)


def self_kinds(info) -> list[str]:
    kinds = [kind for kind, layout in info.kinds.items() if layout.rows == layout.columns == "tokens"]
    if not kinds:
        raise NotDetectable(f"{info.name} has no self-attention over its input tokens to score")
    return kinds


def repeated_texts(model, seed: int, sequences: int, words: int) -> list[str]:
    """`sequences` texts of random words written twice, each fitting the model (fewer words if need be)."""
    rng, pool, texts = random.Random(seed), word_pool(), []
    for _ in range(sequences):
        n = words
        while True:
            half = " " + " ".join(rng.choice(pool) for _ in range(n))  # a leading space: both copies alike
            if model.count_tokens(half * 2) <= model.info.max_tokens or n == 2:
                break
            n = max(2, n // 2)
        texts.append(half * 2)
    return texts


def natural_texts(seed: int, count: int) -> list[str]:
    return random.Random(seed).sample(list(VARIED_TEXTS), min(count, len(VARIED_TEXTS)))


def copy_length(analysis) -> tuple[int, int] | None:
    """(start, n): the text tokens are tokens[start:start + 2n] with the second n a copy of the first; None if not."""
    text = [i for i, special in enumerate(analysis.special) if not special]
    if len(text) < 4 or len(text) % 2 or text != list(range(text[0], text[0] + len(text))):
        return None
    n = len(text) // 2
    start = text[0]
    tokens = analysis.tokens
    return (start, n) if tokens[start:start + n] == tokens[start + n:start + 2 * n] else None


def scores_of(pattern: torch.Tensor, cells: list[tuple[int, int]]) -> torch.Tensor:
    """(L, H): the mean of pattern[:, :, i, j] over the (query i, key j) cells. pattern: (L, H, T, T)."""
    rows = torch.tensor([i for i, _ in cells])
    cols = torch.tensor([j for _, j in cells])
    return pattern[:, :, rows, cols].mean(-1)


def detect_heads(model, seed: int = DEFAULT_SEED, sequences: int = DEFAULT_SEQUENCES, words: int = DEFAULT_WORDS,
                 natural: int = DEFAULT_NATURAL) -> dict:
    """Every head's score for each detector (see the module), with the inputs, the seed and the heads found."""
    kinds = self_kinds(model.info)
    repeated = repeated_texts(model, seed, sequences, words)
    sentences = natural_texts(seed, natural)
    sums = {kind: {name: 0 for name in DETECTORS} for kind in kinds}
    counts = {name: 0 for name in DETECTORS}
    for analysis in model.analyze_batch(repeated, truncate=True):
        found = copy_length(analysis)
        if found is None:
            continue  # the second copy tokenized differently: not a clean repeat
        start, n = found
        second = range(start + n, start + 2 * n)
        for kind in kinds:
            pattern = analysis.patterns[kind].float()
            sums[kind]["duplicate_token"] = sums[kind]["duplicate_token"] + scores_of(pattern, [(i, i - n) for i in second])
            sums[kind]["induction"] = sums[kind]["induction"] + scores_of(pattern, [(i, i - n + 1) for i in second])
        counts["duplicate_token"] += 1
        counts["induction"] += 1
    for analysis in model.analyze_batch(sentences, truncate=True):
        cells = [(i, i - 1) for i in range(1, len(analysis.tokens))
                 if not analysis.special[i] and not analysis.special[i - 1]]
        if not cells:
            continue
        for kind in kinds:
            pattern = analysis.patterns[kind].float()
            sums[kind]["previous_token"] = sums[kind]["previous_token"] + scores_of(pattern, cells)
        counts["previous_token"] += 1
    scores, found = {}, {}
    for kind in kinds:
        scores[kind] = {name: (sums[kind][name] / counts[name]).tolist() if counts[name] else None
                        for name in DETECTORS}
        found[kind] = {name: ranked(table) for name, table in scores[kind].items()}
    return {
        "model": model.info.name, "seed": seed, "kinds": kinds,
        "dims": ["layer", "head"],  # scores[kind][detector][layer][head]
        "detectors": DETECTORS, "threshold": THRESHOLD,
        "inputs": {"repeated": repeated, "natural": sentences},
        "used": {"repeated": counts["induction"], "natural": counts["previous_token"]},
        "scores": scores, "found": found,
    }


def ranked(table: list[list[float]] | None) -> list[dict]:
    """The heads scoring at least THRESHOLD, best first: [{name, layer, head, score}]."""
    if table is None:
        return []
    heads = [{"name": f"L{layer}H{head}", "layer": layer, "head": head, "score": score}
             for layer, row in enumerate(table) for head, score in enumerate(row) if score >= THRESHOLD]
    return sorted(heads, key=lambda h: -h["score"])
