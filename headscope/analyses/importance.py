"""Head importance and the pruning curve: "Are Sixteen Heads Really Better than One?" (Michel, Levy & Neubig 2019).

For a model, a quality measure Q and a set of texts:
  importance(h) = Q(nothing ablated) − Q(head h alone ablated)   when higher Q is better
                  Q(head h alone ablated) − Q(nothing ablated)   when lower Q is better (a loss)
so a positive importance always means the model is worse without the head. Then the pruning curve:
the heads sorted by ascending importance (ties keep the order of the model's modules), and Q with
the first k of them ablated together, for k = 0 (nothing: the baseline) .. all heads. Ablation is
headscope/models/interventions.py's: a head's output z = pattern @ V set to 0 ("zero") or to its mean over the
query positions of the text ("mean"). Michel et al. mask heads to 0 and score importance with a
gradient proxy; here every head is really knocked out, one at a time (exact, 1 + 2N evaluations
for N heads). Formulas and measured curves: docs/importance.md.

The measure Q, chosen by `choose_measure`:
  a model's own task (`own_task()`, headscope/models/analysis.py `Task`), when no texts are given
    exact_match  share of the task's texts whose greedy output, written again under the ablation, is exactly
                 the expected one (dates: 500 held-out written dates and their ISO form; regenerated in batches)
    span_loss    mean cross-entropy of the targets on a span of rows (induction, as `repeated_half_loss`: the
                 second half of 100 random strings written twice, the `loss_second_half` of `induction_scores`)
  by architecture (ModelInfo.generation), for given texts and for every other model (whose
  default texts are headscope/data/varied_texts.py's)
    None (an encoder)        embedding_cosine: mean over texts of cos(e, e0), e the sentence
                             embedding (mean pooling of the last hidden states over the text's
                             tokens, as sentence-transformers does for MiniLM) with the ablation,
                             e0 without it; the baseline is 1
    "continuation" (a causal LM)  next_token_loss: mean cross-entropy of every next token of the
                             texts, token-weighted, nats per token
    "output" (an encoder–decoder) output_logprob: mean log-probability, teacher-forced, of the
                             greedy output the un-ablated model writes for each text, token-weighted
                             (the end token included), nats per token

A chosen `metric` (causal LMs; headscope/models/metric_choice.py, shared with ablation and patching) replaces
these: loss (its name "loss") over a span of every text's tokens, logit_diff or prob at each text's last position,
on the given texts (none: the model's own task's texts, else the default texts); `metric_measure`.

Every measure runs the model through its interface (headscope/models/adapter.py: prepare, forward, regenerate),
never by its class: how a model batches is its own business (ours pad, and mean ablation excludes padding
in self-attention; transformers checkpoints and the dates model's teacher-forced passes run one text at a time,
so that padding never enters a head's mean over queries).
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Literal

import torch

from headscope.analyses.heads import head_name
from headscope.data.varied_texts import VARIED_TEXTS
from headscope.models.analysis import AttentionModel, Task, TooManyCharacters, cut_to_chars
from headscope.models.interventions import MODES, Ablation, AblationMode, ablating
from headscope.models.metric_choice import METRIC_ABOUT, MetricChoice

BATCH_SIZE = 64  # texts per forward call (models that batch pad them; the others run them one by one)
EXACT_MATCH_BATCH = 500  # texts regenerated together (the dates model's own 500: one padded batch)

Direction = Literal["higher_is_better", "lower_is_better"]


class CannotMeasure(ValueError):
    """What importance cannot be measured on: `code` says which limit or problem, for a 4xx answer."""

    def __init__(self, code: str, message: str, **extra):
        self.code, self.extra = code, extra
        super().__init__(message)


class BadTexts(CannotMeasure):
    """Texts importance cannot run on."""


@dataclass
class Measure:
    name: str
    description: str  # what is measured, on which data
    direction: Direction
    units: str
    examples: int  # texts (or generated examples) it averages over
    evaluate: Callable[[], float]  # Q of the model as it runs now (inside whatever ablating block)

    def describe(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "evaluate"}


# --- the measures ---------------------------------------------------------------------------------------

def exact_match(model: AttentionModel, task: Task) -> Measure:
    """Share of the task's texts whose output, written again under the current edits, is exactly the expected."""
    with torch.no_grad():
        batch = [model.prepare(text) for text in task.texts]

    @torch.no_grad()
    def evaluate() -> float:
        written = [out for i in range(0, len(batch), EXACT_MATCH_BATCH) for out in model.regenerate(batch[i: i + EXACT_MATCH_BATCH])]
        return sum(w == e for w, e in zip(written, task.expected, strict=True)) / len(batch)

    return Measure(task.measure, f"share of {task.description}",
                   "higher_is_better", "fraction", len(batch), evaluate)


def span_loss(model: AttentionModel, task: Task) -> Measure:
    start, end = task.span
    logprob = target_logprobs(model, list(task.texts), lambda p: range(start, min(end, len(p.targets))))

    def evaluate() -> float:
        total, count = logprob()
        return -total / count

    return Measure(task.measure, task.description, "lower_is_better",
                   "nats per token", len(task.texts), evaluate)


def embedding_cosine(model: AttentionModel, texts: list[str]) -> Measure:
    embed = sentence_embeddings(model, texts)
    reference = embed()  # (N, C), without edits

    def evaluate() -> float:
        return torch.nn.functional.cosine_similarity(embed(), reference, dim=-1).mean().item()

    return Measure("embedding_cosine", f"mean over {len(texts)} texts of the cosine similarity of the sentence "
                   "embedding (mean pooling of the last hidden states) to the un-ablated model's",
                   "higher_is_better", "cosine", len(texts), evaluate)


def next_token_loss(model: AttentionModel, texts: list[str]) -> Measure:
    logprob = target_logprobs(model, texts)
    if not logprob.count:
        raise BadTexts("nothing_to_predict", "every text is a single token: a causal LM has no next token to predict")

    def evaluate() -> float:
        total, count = logprob()
        return -total / count

    return Measure("next_token_loss", f"mean cross-entropy of every next token of {len(texts)} texts, "
                   "token-weighted", "lower_is_better", "nats per token", len(texts), evaluate)


def output_logprob(model: AttentionModel, texts: list[str]) -> Measure:
    logprob = target_logprobs(model, texts)  # prepares the texts: writes the un-ablated greedy outputs first

    def evaluate() -> float:
        total, count = logprob()
        return total / count

    return Measure("output_logprob", f"mean log-probability, teacher-forced, of the greedy output the un-ablated "
                   f"model writes for each of {len(texts)} texts, token-weighted (end token included)",
                   "higher_is_better", "nats per token", len(texts), evaluate)


def metric_measure(model: AttentionModel, texts: list[str], metric: MetricChoice) -> Measure:
    """A causal LM's chosen metric (headscope/models/metric_choice.py), the mean over the texts: loss is
    token-weighted over each text's span (the same [start, end) in every text; BadMetric out_of_range when a text
    is too short for it), logit_diff and prob are read at each text's last position."""
    description, units, direction = METRIC_ABOUT[metric.name]
    if metric.name == "loss":
        def rows(p) -> range:  # BadMetric out_of_range for a text too short for the span
            start, end = metric.span_of(len(p.targets) + 1)
            return range(start - 1, end - 1)  # position j - 1 predicts token j

        logprob = target_logprobs(model, texts, rows)
        start, end = metric.span or (1, None)

        def evaluate() -> float:
            total, count = logprob()
            return -total / count

        where = f"tokens [{start}, {end}) of each text" if end else "every token after the first of each text"
    else:
        prepared = batches(model, texts)

        @torch.no_grad()
        def evaluate() -> float:
            values = [metric.value(out.logits, out.next_logits, p.targets)
                      for batch in prepared for p, out in zip(batch, model.forward(batch), strict=True)]
            return sum(values) / len(values)

        where = "the last position of each text (its prediction of the next token)"
    return Measure(metric.name, f"{description}: {where}, mean over {len(texts)} texts", direction, units,
                   len(texts), evaluate)


DEFAULT_TEXT_EVALUATIONS = 48 * 145  # the default run's texts x evaluations: all 48 varied texts on MiniLM's 72 heads


def default_texts(model: AttentionModel) -> list[str]:
    """The first varied texts, as many as keep the default run at about MiniLM's size (texts x evaluations), at
    least 8: SmolLM2's 270 heads (541 evaluations) get 12."""
    evaluations = 1 + 2 * model.info.layers * model.info.heads * len(model.info.kinds)
    return list(VARIED_TEXTS[: max(8, min(len(VARIED_TEXTS), DEFAULT_TEXT_EVALUATIONS // evaluations))])


def choose_measure(model: AttentionModel, texts: list[str] | None, metric: MetricChoice | None = None) -> Measure:
    """The model's own task (`own_task()`) when no texts are given; else the architecture's measure (from
    ModelInfo.generation) on the texts (headscope/data/varied_texts.py's when none are given). With a metric
    choice: that metric, on the texts, else the own task's texts, else the default texts."""
    if metric is not None:
        if texts is None:
            task = model.own_task()
            texts = list(task.texts) if task is not None else default_texts(model)
        return metric_measure(model, texts, metric)
    if texts is None:
        task = model.own_task()
        if task is not None:
            return exact_match(model, task) if task.metric == "exact_match" else span_loss(model, task)
        texts = default_texts(model)
    generation = model.info.generation
    if generation is None:
        return embedding_cosine(model, texts)
    if generation == "continuation":
        return next_token_loss(model, texts)
    return output_logprob(model, texts)


# --- what a measure computes, through the model's interface (headscope/models/adapter.py) -------------------

def batches(model: AttentionModel, texts: list[str]) -> list[list]:
    """The texts prepared (tokenized; outputs generated, un-ablated), in batches of BATCH_SIZE."""
    with torch.no_grad():
        prepared = [model.prepare(text) for text in texts]
    return [prepared[i: i + BATCH_SIZE] for i in range(0, len(prepared), BATCH_SIZE)]


def sentence_embeddings(model: AttentionModel, texts: list[str]) -> Callable[[], torch.Tensor]:
    """A function returning (N, C) mean-pooled last hidden states of the texts, as the model runs then."""
    prepared = batches(model, texts)

    @torch.no_grad()
    def embed() -> torch.Tensor:
        return torch.stack([out.hidden.mean(0) for batch in prepared for out in model.forward(batch)])  # (N, C)

    return embed


class TargetLogprobs:
    """Called: (sum of the log-probabilities the model gives the texts' targets on the chosen rows, as it runs then;
    how many rows). `count` is known before any call."""

    def __init__(self, model: AttentionModel, texts: list[str], rows: Callable | None = None):
        self.model, self.batches = model, batches(model, texts)
        choose = rows or (lambda p: range(len(p.targets)))
        self.rows = [[torch.tensor(list(choose(p)), dtype=torch.long) for p in batch] for batch in self.batches]
        self.count = sum(len(r) for batch in self.rows for r in batch)

    @torch.no_grad()
    def __call__(self) -> tuple[float, int]:
        total = 0.0
        for batch, rows in zip(self.batches, self.rows, strict=True):
            for p, out, r in zip(batch, self.model.forward(batch), rows, strict=True):
                targets = torch.tensor(p.targets, dtype=torch.long)[r]  # (n,)
                total += out.logits[r].float().log_softmax(-1).gather(1, targets[:, None]).sum().item()
        return total, self.count


def target_logprobs(model: AttentionModel, texts: list[str], rows: Callable | None = None) -> TargetLogprobs:
    return TargetLogprobs(model, texts, rows)


# --- texts, checked against the limits ------------------------------------------------------------------

def check_texts(model: AttentionModel, texts: list[str], max_texts: int, max_tokens: int) -> list[str]:
    """The texts if importance may run on them, else BadTexts naming the limit or the text."""
    if not texts:
        raise BadTexts("no_texts", "no texts given; give at least one, or none at all for the model's default set")
    if len(texts) > max_texts:
        raise BadTexts("too_many_texts", f"{len(texts)} texts given; importance takes at most {max_texts}",
                       count=len(texts), limit=max_texts)
    total = 0
    for i, text in enumerate(texts):
        if not text.strip():
            raise BadTexts("empty_text", f"text {i} is empty or only whitespace", index=i)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise BadTexts("invalid_unicode", f"text {i} is not valid Unicode: lone surrogate at character {e.start}",
                           index=i) from None
        try:
            cut_to_chars(model.info, text, truncate=False)
            count = model.count_tokens(text)
        except TooManyCharacters as e:
            raise BadTexts("too_many_characters", f"text {i}: {e}".split(";")[0], index=i, limit=e.limit) from None
        if count > model.info.max_tokens:
            raise BadTexts("too_many_tokens", f"text {i} has {count} tokens but {model.info.name} takes at most "
                           f"{model.info.max_tokens}", index=i, count=count, limit=model.info.max_tokens)
        total += count
    if total > max_tokens:
        raise BadTexts("too_many_tokens", f"the texts have {total} tokens together; importance takes at most "
                       f"{max_tokens}", count=total, limit=max_tokens)
    return texts


# --- the measurement --------------------------------------------------------------------------------------

def all_heads(model: AttentionModel) -> tuple[dict, list[tuple[str, int, int]]]:
    """The model's attention modules and every (kind, layer, head), in module order."""
    try:
        modules = model.attention_modules()
    except (NotImplementedError, AttributeError) as e:
        raise CannotMeasure("not_ablatable", f"head importance needs {model.info.name}'s heads one by one: {e}") from None
    return modules, [(kind, layer, h) for kind, layer in modules for h in range(model.info.heads)]


def importance_steps(model: AttentionModel, mode: AblationMode = "zero", texts: list[str] | None = None,
                     measure: Callable[[], Measure] | None = None,
                     metric: MetricChoice | None = None) -> Iterator[dict]:
    """The whole measurement, one evaluation of the measure per step: yields {"done", "total"} after each
    (1 baseline + N heads alone + N points of the curve), then {"result": ...}. The first step also prepares
    the measure (its data, and the un-ablated reference where it needs one): `choose_measure(model, texts)`
    (`metric`: a chosen metric) unless `measure` makes another (tests use smaller data). Texts are taken as checked (`check_texts`)."""
    if mode not in MODES:
        raise ValueError(f"ablation must be one of {', '.join(MODES)}, not {mode!r}")
    modules, heads = all_heads(model)
    total = 1 + 2 * len(heads)
    started = time.perf_counter()

    def progress(done: int) -> dict:
        """{"done", "total", "seconds": so far, "remaining_s": at the pace so far}."""
        seconds = time.perf_counter() - started
        return {"done": done, "total": total, "seconds": round(seconds, 3),
                "remaining_s": round(seconds / done * (total - done), 3)}

    measure = measure() if measure is not None else choose_measure(model, texts, metric)
    baseline = measure.evaluate()
    yield progress(1)

    alone = []
    for head in heads:
        with ablating(modules, Ablation((head,), mode)):
            alone.append(measure.evaluate())
        yield progress(1 + len(alone))
    sign = 1.0 if measure.direction == "higher_is_better" else -1.0
    importance = [sign * (baseline - q) for q in alone]
    order = sorted(range(len(heads)), key=lambda i: importance[i])  # ascending; stable: ties in module order

    curve = [baseline]
    for k in range(1, len(heads) + 1):
        with ablating(modules, Ablation(tuple(heads[i] for i in order[:k]), mode)):
            curve.append(measure.evaluate())
        yield progress(1 + len(heads) + k)
    yield {"result": result_dict(model, mode, measure, heads, baseline, alone, importance, order, curve)}


def result_dict(model, mode, measure, heads, baseline, alone, importance, order, curve) -> dict:
    def per_kind(values: list[float]) -> dict[str, list[list[float]]]:
        out: dict[str, list[list[float]]] = {}
        for (kind, layer, head), v in zip(heads, values, strict=True):
            rows = out.setdefault(kind, [])
            if layer == len(rows):
                rows.append([])
            rows[layer].append(v)
        return out

    lower = measure.direction == "lower_is_better"
    return {
        "model": model.info.name,
        "ablation": mode,
        "measure": measure.describe(),
        "importance_formula": ("Q(head ablated) - Q(none ablated)" if lower else "Q(none ablated) - Q(head ablated)")
        + ": positive when the model is worse without the head",
        "dims": ["layer", "head"],
        "baseline": baseline,
        "importance": per_kind(importance),
        "ablated_quality": per_kind(alone),
        "curve": {
            "description": "quality[k]: Q with the first k heads of `removed` ablated together (ascending "
            "importance); quality[0] is the baseline, quality[-1] every head ablated",
            "removed": [{"kind": heads[i][0], "layer": heads[i][1], "head": heads[i][2],
                         "name": head_name(*heads[i][1:])} for i in order],
            "quality": curve,
        },
        "evaluations": 1 + 2 * len(heads),
    }


def head_importance(model: AttentionModel, mode: AblationMode = "zero", texts: list[str] | None = None,
                    progress: Callable[[int, int], None] | None = None,
                    measure: Callable[[], Measure] | None = None, metric: MetricChoice | None = None) -> dict:
    """Run `importance_steps` to the end; progress(done, total) after every step."""
    for event in importance_steps(model, mode, texts, measure, metric):
        if "result" in event:
            return event["result"]
        if progress is not None:
            progress(event["done"], event["total"])
    raise RuntimeError("importance_steps ended without a result")
