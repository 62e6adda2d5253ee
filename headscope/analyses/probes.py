"""Probing heads for a relation between words, after Clark et al. 2019, "What does BERT look at?".

A probe is a set of pairs (sentence, from-word, to-word) of one relation (determiner -> noun,
object -> verb, pronoun -> antecedent...). Each head is read as a classifier: for a pair, the head
predicts the word that receives the most attention from the from-word; its accuracy is how often
that is the to-word. The yardstick is the best fixed-offset baseline: always predict the word at
offset k from the from-word, with the k that is right most often on these pairs.

Pairs come as JSONL, one object per line (blank lines are ignored):
    {"sentence": "The dog chased the cat.", "from": "the", "from_occurrence": 2, "to": "cat"}
`from` and `to` are a word's exact text (case-sensitive) as it stands in the sentence, matched as a
whole word: where the text starts or ends with a letter, digit or underscore, the character before
or after it must not be one. A text that occurs more than once needs `from_occurrence` /
`to_occurrence` (1 for the first). A bad line (not JSON, a field missing or of the wrong type, a
word that is not in the sentence or is ambiguous, from and to the same) is an error naming the
line: `PairsError`, all bad lines at once.

Words are the model's own (Analysis.words, the tokenizer's word ids): a pair's from-word is the one
word of the model whose tokens' character spans overlap the named text. Where the model has no word
there (a character-level model's punctuation) or several (a tokenizer that splits "don't" into
"don", "'", "t"), or the sentence does not fit the model, the pair is skipped with the reason; this
is about the model, not the file, so it is reported, not refused.

Word-level attention (Clark et al.'s convention): attention *to* a word is the sum of the weights on
its tokens; attention *from* a word is the mean over its tokens' rows. Tokens that belong to no
word (special tokens such as [CLS] and [SEP]; a character model's spaces) are not candidates. Ties
go to the earlier word. Only attention kinds whose rows and columns are both the input tokens are
probed (their Layout says so).
"""

import json
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from headscope.analyses.heads import BATCH_TOKENS, head_name, padded_batches
from headscope.models.analysis import Analysis, ModelInfo

FORMAT = (
    "JSONL: one object per line, {\"sentence\": str, \"from\": str, \"to\": str, \"from_occurrence\"?: int, "
    "\"to_occurrence\"?: int}. from and to are a word's exact text in the sentence, matched as a whole word; a text "
    "that occurs more than once needs its *_occurrence (1 = the first). Blank lines are ignored."
)
FIELDS = ("sentence", "from", "to", "from_occurrence", "to_occurrence")
REQUIRED = ("sentence", "from", "to")
MAX_REPORTED_LINES = 20  # a PairsError lists at most this many bad lines (and says how many there are)
BEST_HEADS = 10  # heads listed as best, over all probed kinds

DEFINITIONS = {
    "prediction": "the word that receives the most attention from the from-word: attention to a word is the sum "
    "over its tokens, from a word the mean over its tokens; tokens of no word (special tokens; a character-level "
    "model's spaces and punctuation) are not candidates; "
    "ties go to the earlier word",
    "accuracy": "share of the pairs used whose prediction is the to-word",
    "baseline": "always predict the word at a fixed offset from the from-word (in the model's words); the offset "
    "right most often on these pairs, ties to the smaller distance, then to the left",
}


# ---- the pairs ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WordRef:
    """A word of a pair as the file names it, found in the sentence's text."""

    text: str
    occurrence: int  # 1-based, among whole-word occurrences of `text` in the sentence
    start: int  # its characters in the sentence: sentence[start:end] == text
    end: int


@dataclass(frozen=True)
class Pair:
    line: int  # 1-based line of the file
    sentence: str
    source: WordRef  # the from-word
    target: WordRef  # the to-word


class PairsError(ValueError):
    """Lines of a pairs file that cannot be read: problems = [(line, what is wrong)]."""

    def __init__(self, problems: list[tuple[int, str]]):
        self.problems = problems
        shown = "; ".join(f"line {line}: {what}" if line else what for line, what in problems[:MAX_REPORTED_LINES])
        more = f"; and {len(problems) - MAX_REPORTED_LINES} more bad lines" if len(problems) > MAX_REPORTED_LINES else ""
        super().__init__(shown + more)


def quote(text: str) -> str:
    """Text in double quotes, as JSON writes it: how messages name words and fields. A lone surrogate (which JSON
    lets a file write as \\ud800) is written escaped, so that the message itself is valid Unicode."""
    return json.dumps(text, ensure_ascii=False).encode("utf-8", "backslashreplace").decode("utf-8")


def occurrences(sentence: str, word: str) -> list[tuple[int, int]]:
    """Character spans of `word` in `sentence` as a whole word: no letter, digit or underscore (regex \\w) runs on
    past an end of it that is itself one."""
    before = r"(?<!\w)" if re.match(r"\w", word[0]) else ""
    after = r"(?!\w)" if re.match(r"\w", word[-1]) else ""
    return [m.span() for m in re.finditer(before + re.escape(word) + after, sentence)]


def _word_ref(record: dict, sentence: str, name: str) -> WordRef:
    text = record[name]
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{name} must be a word of the sentence (a non-empty string)")
    if text != text.strip():
        raise ValueError(f"{name} {quote(text)} has spaces at its ends")
    key = f"{name}_occurrence"
    occurrence = record.get(key)
    if occurrence is not None and (type(occurrence) is not int or occurrence < 1):
        raise ValueError(f"{key} must be a whole number of 1 or more")
    spans = occurrences(sentence, text)
    if not spans:
        raise ValueError(f"{name} {quote(text)} is not a whole word of the sentence")
    if occurrence is None and len(spans) > 1:
        raise ValueError(f"{name} {quote(text)} occurs {len(spans)} times in the sentence: say which with {key} "
                         f"(1 to {len(spans)})")
    occurrence = occurrence or 1
    if occurrence > len(spans):
        raise ValueError(f"{key} is {occurrence} but {quote(text)} occurs {len(spans)} time"
                         f"{'s' if len(spans) > 1 else ''} in the sentence")
    return WordRef(text, occurrence, *spans[occurrence - 1])


def parse_line(line: str, number: int) -> Pair:
    """One line of a pairs file; ValueError saying what is wrong."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON: {e.msg} at column {e.colno}") from None
    except RecursionError:
        raise ValueError("not valid JSON: nested too deeply") from None
    if not isinstance(record, dict):
        raise ValueError('expected a JSON object such as {"sentence": "...", "from": "...", "to": "..."}')
    unknown = [k for k in record if k not in FIELDS]
    if unknown:
        raise ValueError(f"unknown field {quote(unknown[0])}; the fields are {', '.join(FIELDS)}")
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise ValueError(f"missing {' and '.join(missing)}")
    sentence = record["sentence"]
    if not isinstance(sentence, str) or not sentence.strip():
        raise ValueError("sentence must be a non-empty string")
    try:
        sentence.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"sentence is not valid Unicode: lone surrogate at character {e.start}") from None
    source, target = _word_ref(record, sentence, "from"), _word_ref(record, sentence, "to")
    if (source.start, source.end) == (target.start, target.end):
        raise ValueError(f"from and to are the same word ({quote(source.text)})")
    return Pair(number, sentence, source, target)


class TooManyPairs(ValueError):
    def __init__(self, count: int, limit: int):
        self.count, self.limit = count, limit
        super().__init__(f"{count} pairs sent; the limit is {limit}")


def parse_pairs(text: str, max_pairs: int | None = None) -> list[Pair]:
    """Every pair of a JSONL text; PairsError naming every bad line. Blank lines are skipped.

    max_pairs: TooManyPairs, before any line is parsed, when the text has more lines that are not blank."""
    lines = text.splitlines()
    if max_pairs is not None:
        count = sum(1 for line in lines if line.strip())
        if count > max_pairs:
            raise TooManyPairs(count, max_pairs)
    pairs, problems = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            pairs.append(parse_line(line, number))
        except ValueError as e:
            problems.append((number, str(e)))
    if problems:
        raise PairsError(problems)
    if not pairs:
        raise PairsError([(0, "no pairs: give one JSON object per line with sentence, from and to")])  # line 0: none
    return pairs


# ---- one model ---------------------------------------------------------------------------------------------


class NotProbeable(ValueError):
    """The model has no attention kind whose rows and columns are both its input tokens."""


def probe_kinds(info: ModelInfo) -> list[str]:
    """The attention kinds whose rows (queries) and columns (keys) are both the input tokens."""
    kinds = [kind for kind, layout in info.kinds.items() if layout.rows == "tokens" and layout.columns == "tokens"]
    if not kinds:
        raise NotProbeable(f"{info.name} has no attention kind whose queries and keys are both the input tokens")
    return kinds


def probe_new_tokens(info: ModelInfo) -> int | None:
    """The least generation a model may be asked for: its input's attention does not depend on it."""
    return {"output": 1, "continuation": 0}.get(info.generation)


def word_spans(analysis: Analysis) -> tuple[list[int], list[tuple[int, int]]]:
    """(word position of each token, -1 for tokens of no word; character span of each word), words numbered
    0, 1, ... in the order they start. Positions, not the tokenizer's ids, so that offsets count words."""
    order: dict[int, int] = {}
    positions = []
    for w in analysis.words:
        if w is not None and w not in order:
            order[w] = len(order)
        positions.append(-1 if w is None else order[w])
    spans: list[list[int] | None] = [None] * len(order)
    for p, offset in zip(positions, analysis.offsets, strict=True):
        if p < 0 or offset is None or offset[0] == offset[1]:
            continue
        span = spans[p]
        spans[p] = [offset[0], offset[1]] if span is None else [min(span[0], offset[0]), max(span[1], offset[1])]
    return positions, [tuple(s) if s is not None else (-1, -1) for s in spans]


def find_word(ref: WordRef, spans: list[tuple[int, int]], sentence: str, model: str) -> int:
    """The position of the one model word whose characters overlap `ref`; ValueError (the skip reason) if
    none or several do."""
    hits = [p for p, (start, end) in enumerate(spans) if start < ref.end and end > ref.start]
    where = f"{quote(ref.text)}" + (f" (occurrence {ref.occurrence})" if ref.occurrence > 1 else "")
    if not hits:
        raise ValueError(f"{model} has no word at {where}")
    if len(hits) > 1:
        parts = ", ".join(quote(sentence[spans[p][0] : spans[p][1]]) for p in hits)
        raise ValueError(f"{model} splits {where} into {len(hits)} words: {parts}")
    return hits[0]


def word_attention(pattern: torch.Tensor, positions: list[int], words: int) -> torch.Tensor:
    """(L, H, T, T) token attention -> (L, H, W, W) word attention, float64: to a word = sum over its tokens'
    columns, from a word = mean over its tokens' rows. Tokens of no word (-1) drop out."""
    T = pattern.shape[-1]
    member = torch.zeros(T, words, dtype=torch.float64)  # (T, W): 1 where token t belongs to word w
    for t, p in enumerate(positions):
        if p >= 0:
            member[t, p] = 1.0
    to_words = pattern.double() @ member  # (L, H, T, W)
    mean_rows = (member / member.sum(0)).T  # (W, T): row w averages word w's tokens
    return mean_rows @ to_words  # (L, H, W, W)


@dataclass
class Tally:
    """Counts over the pairs used, that add up batch by batch: correct[kind] (L, H), offsets seen."""

    pairs: int = 0
    sentences: int = 0
    correct: dict[str, np.ndarray] = field(default_factory=dict)  # kind -> (L, H) int64
    offsets: Counter = field(default_factory=Counter)  # to-word position - from-word position -> pairs
    skipped: list[dict] = field(default_factory=list)  # {"line", "reason"}

    def __add__(self, other: "Tally") -> "Tally":
        correct = {k: self.correct.get(k, 0) + other.correct.get(k, 0) for k in self.correct | other.correct}
        return Tally(self.pairs + other.pairs, self.sentences + other.sentences, correct,
                     self.offsets + other.offsets, self.skipped + other.skipped)

    @property
    def later(self) -> int:
        """Pairs whose to-word comes after the from-word: no head of a causal kind can predict them."""
        return sum(count for offset, count in self.offsets.items() if offset > 0)


def tally_analysis(analysis: Analysis, pairs: list[Pair], kinds: list[str]) -> Tally:
    """Each head's hits on the pairs of one analysed sentence, and their word offsets."""
    positions, spans = word_spans(analysis)
    used, tally = [], Tally(sentences=1)
    for pair in pairs:
        try:
            source = find_word(pair.source, spans, pair.sentence, analysis.model)
            target = find_word(pair.target, spans, pair.sentence, analysis.model)
            if source == target:
                raise ValueError(f"{analysis.model} reads {quote(pair.source.text)} and {quote(pair.target.text)} "
                                 "as one word")
        except ValueError as e:
            tally.skipped.append({"line": pair.line, "reason": str(e)})
            continue
        used.append((source, target))
    tally.pairs = len(used)
    tally.offsets = Counter(target - source for source, target in used)
    if not used:
        return tally
    sources = torch.tensor([s for s, _ in used])
    targets = torch.tensor([t for _, t in used])
    for kind in kinds:
        words = word_attention(analysis.patterns[kind], positions, len(spans))  # (L, H, W, W)
        predicted = words[:, :, sources, :].argmax(-1)  # (L, H, P): argmax gives the first of equal maxima
        tally.correct[kind] = (predicted == targets).sum(-1).numpy().astype(np.int64)  # (L, H)
    return tally


def plan_probe(model, pairs: list[Pair]) -> tuple[list[tuple[str, int]], Tally, int]:
    """The distinct sentences that fit the model with their token counts (fewest tokens first: less padding), a
    Tally holding the pairs skipped because their sentence does not fit, and the tokens of the sentences kept."""
    sentences = list(dict.fromkeys(p.sentence for p in pairs))
    limit, kept, skipped, tokens = model.info.max_tokens, [], {}, 0
    for sentence in sentences:
        if len(sentence) > model.info.max_chars:  # before tokenizing: bounds its cost
            skipped[sentence] = f"sentence has {len(sentence)} characters but {model.info.name} takes at most " \
                f"{model.info.max_chars}"
            continue
        try:
            count = model.count_tokens(sentence)
        except Exception as e:  # noqa: BLE001 - text the tokenizer cannot read is a skip, not a failure
            skipped[sentence] = f"cannot tokenize: {e}"
            continue
        if count > limit:
            skipped[sentence] = f"sentence has {count} tokens but {model.info.name} takes at most {limit}"
            continue
        kept.append((sentence, count))
        tokens += count
    kept.sort(key=lambda kept_one: kept_one[1])
    reasons = [{"line": p.line, "reason": skipped[p.sentence]} for p in pairs if p.sentence in skipped]
    return kept, Tally(skipped=reasons), tokens


def tally_batch(model, sentences: list[str], pairs: list[Pair]) -> Tally:
    """Run sentences through `model` together and count each head's hits on their pairs."""
    kinds = probe_kinds(model.info)
    analyses = model.analyze_batch(sentences, new_tokens=probe_new_tokens(model.info))
    if len(analyses) != len(sentences):
        raise RuntimeError(f"{model.info.name} returned {len(analyses)} analyses for {len(sentences)} texts")
    by_sentence: dict[str, list[Pair]] = {}
    for p in pairs:
        by_sentence.setdefault(p.sentence, []).append(p)
    return sum((tally_analysis(a, by_sentence[s], kinds) for s, a in zip(sentences, analyses, strict=True)), Tally())


def pairs_of(pairs: list[Pair], sentences: list[str]) -> list[Pair]:
    """The pairs whose sentence is one of `sentences`."""
    chosen = set(sentences)
    return [p for p in pairs if p.sentence in chosen]


def best_offset(offsets: Counter) -> int:
    """The offset right most often; ties to the smaller distance, then to the left (negative)."""
    return min(offsets, key=lambda k: (-offsets[k], abs(k), k))


class NoUsablePairs(ValueError):
    """Every pair was skipped."""

    def __init__(self, skipped: list[dict], model: str):
        self.skipped = skipped
        first = skipped[0] if skipped else None
        super().__init__(f"no pair could be used with {model}" +
                         (f"; {len(skipped)} skipped, first: line {first['line']}: {first['reason']}" if first else ""))


def summarize(tally: Tally, info: ModelInfo, best: int = BEST_HEADS) -> dict:
    """The probe's answer: accuracy [layer][head] per kind, the baseline, the best heads, what was skipped."""
    if tally.pairs == 0:
        raise NoUsablePairs(sorted(tally.skipped, key=lambda s: s["line"]), info.name)
    n = tally.pairs
    offset = best_offset(tally.offsets)
    baseline = {
        "offset": offset,
        "correct": tally.offsets[offset],
        "accuracy": tally.offsets[offset] / n,
        "offsets": [{"offset": k, "pairs": tally.offsets[k], "accuracy": tally.offsets[k] / n}
                    for k in sorted(tally.offsets)],
    }
    kinds, heads = {}, []
    for kind, correct in tally.correct.items():
        causal = info.kinds[kind].causal
        reachable = n - tally.later if causal else n
        kinds[kind] = {
            "layout": {"rows": info.kinds[kind].rows, "columns": info.kinds[kind].columns, "causal": causal},
            "accuracy": (correct / n).tolist(),  # [layer][head]
            "correct": correct.tolist(),
            "reachable": reachable,  # pairs a head of this kind can predict at all
            "note": (f"{kind} is causal: a word sees only itself and earlier words, so the {n - reachable} of {n} "
                     f"pairs whose to-word comes later cannot be predicted by any of its heads (the best accuracy "
                     f"possible is {reachable / n:.3f}); probe relations that point backwards, e.g. noun -> "
                     "determiner") if reachable < n else None,
        }
        for layer, head in np.ndindex(correct.shape):
            heads.append({"kind": kind, "layer": layer, "head": head, "name": head_name(layer, head),
                          "correct": int(correct[layer, head]), "accuracy": float(correct[layer, head] / n),
                          "above_baseline": float((correct[layer, head] - baseline["correct"]) / n)})
    order = {kind: i for i, kind in enumerate(kinds)}
    heads.sort(key=lambda h: (-h["correct"], order[h["kind"]], h["layer"], h["head"]))
    return {
        "model": info.name,
        "pairs": n,
        "sentences": tally.sentences,
        "skipped": sorted(tally.skipped, key=lambda s: s["line"]),
        "dims": ["layer", "head"],
        "definitions": DEFINITIONS,
        "kinds": kinds,
        "baseline": baseline,
        "best": heads[:best],
    }


def probe(model, pairs: list[Pair], batch_size: int = 32, padded_tokens: int = BATCH_TOKENS, progress=lambda done: None,
          best: int = BEST_HEADS) -> dict:
    """Every step in one call, for the command line: plan, run the sentences in batches, summarize."""
    sentences, tally, _ = plan_probe(model, pairs)
    probe_kinds(model.info)
    for batch in padded_batches(sentences, batch_size, padded_tokens):
        tally += tally_batch(model, batch, pairs_of(pairs, batch))
        progress(len(batch))
    return summarize(tally, model.info, best)
