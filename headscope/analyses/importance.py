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
  built-ins with their own data (no texts given)
    dates      exact_match: share of DATES_HELDOUT held-out generated dates whose greedy output, up
               to </s>, is exactly the ISO date (headscope/data/calendar.py's held-out split, seed as
               headscope/training/dates.py's; decoded in batches)
    induction  repeated_half_loss: mean cross-entropy of predicting the second half of
               INDUCTION_STRINGS random strings written twice (headscope/models/induction.py's
               `repeated_random`; the `loss_second_half` of `induction_scores`), nats per token
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

Our own models run texts in padded batches (mean ablation excludes padding in self-attention);
transformers checkpoints and the dates model's teacher-forced passes run one text at a time, so
that padding never enters a head's mean over queries.
"""

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Literal

import torch

from headscope.analyses.heads import head_name
from headscope.data.varied_texts import VARIED_TEXTS
from headscope.models.analysis import AttentionModel, TooManyCharacters, cut_to_chars
from headscope.models.interventions import MODES, Ablation, Mode, ablating

DATES_HELDOUT = 500  # held-out dates the dates model's exact match is measured on
DATES_HELDOUT_SEED = 1234  # headscope/training/dates.py's HELDOUT_SEED: its held-out set starts with these 500
INDUCTION_STRINGS = 100  # random strings written twice, as induction_scores
INDUCTION_LENGTH = 20  # symbols per string
INDUCTION_SEED = 0
BATCH_SIZE = 64  # texts per padded batch for our own models (the dates set: one batch of 500)

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

def dates_exact_match(model, n: int = DATES_HELDOUT, seed: int = DATES_HELDOUT_SEED) -> Measure:
    from headscope.data.calendar import heldout_examples
    from headscope.models.dates import BOS_ID, EOS_ID, encode_chars, encode_source, pad_batch

    pairs = heldout_examples(n, seed)
    source, source_pad_mask = pad_batch([encode_source(text) for text, _ in pairs])  # (n, S), (n, S)
    expected = [[*encode_chars(iso), EOS_ID] for _, iso in pairs]

    @torch.no_grad()
    def evaluate() -> float:
        generated = model.net.generate(source, BOS_ID, EOS_ID, source_pad_mask)  # (n, 1 + steps)
        return sum(row[1: len(e) + 1] == e for row, e in zip(generated.tolist(), expected, strict=True)) / n

    return Measure("exact_match", f"share of {n} held-out generated dates (never seen in training, every written "
                   "form) whose greedy output, up to </s>, is exactly the ISO date", "higher_is_better",
                   "fraction", n, evaluate)


def repeated_half_loss(model, n: int = INDUCTION_STRINGS, length: int = INDUCTION_LENGTH,
                       seed: int = INDUCTION_SEED) -> Measure:
    from headscope.models.induction import repeated_random

    ids = repeated_random(n, length, seed)  # (n, 1 + 2 * length)

    @torch.no_grad()
    def evaluate() -> float:
        logits, _ = model.net(ids)  # (n, T, V)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")  # (n, T-1)
        return loss[:, length:].mean().item()  # predicting the second half's tokens

    return Measure("repeated_half_loss", f"mean cross-entropy of predicting the second half of {n} random strings of "
                   f"{length} distinct symbols, each written twice (an induction head copies them)",
                   "lower_is_better", "nats per token", n, evaluate)


def embedding_cosine(model, texts: list[str]) -> Measure:
    embed = sentence_embeddings(model, texts)
    reference = embed()  # (N, C), without ablation

    def evaluate() -> float:
        return torch.nn.functional.cosine_similarity(embed(), reference, dim=-1).mean().item()

    return Measure("embedding_cosine", f"mean over {len(texts)} texts of the cosine similarity of the sentence "
                   "embedding (mean pooling of the last hidden states) to the un-ablated model's",
                   "higher_is_better", "cosine", len(texts), evaluate)


def next_token_loss(model, texts: list[str]) -> Measure:
    losses, count = token_losses(model, texts)
    if not count:
        raise BadTexts("nothing_to_predict", "every text is a single token: a causal LM has no next token to predict")

    def evaluate() -> float:
        return losses() / count

    return Measure("next_token_loss", f"mean cross-entropy of every next token of {len(texts)} texts, "
                   "token-weighted", "lower_is_better", "nats per token", len(texts), evaluate)


def output_logprob(model, texts: list[str]) -> Measure:
    logprob = output_logprobs(model, texts)  # writes the un-ablated greedy outputs first

    def evaluate() -> float:
        total, count = logprob()
        return total / count

    return Measure("output_logprob", f"mean log-probability, teacher-forced, of the greedy output the un-ablated "
                   f"model writes for each of {len(texts)} texts, token-weighted (end token included)",
                   "higher_is_better", "nats per token", len(texts), evaluate)


def choose_measure(model: AttentionModel, texts: list[str] | None) -> Measure:
    """The built-in's own measure on its own data when no texts are given; else the architecture's measure
    (from ModelInfo.generation) on the texts (headscope/data/varied_texts.py's when none are given)."""
    from headscope.models.dates import DatesModel
    from headscope.models.induction import InductionModel

    if texts is None:
        if isinstance(model, DatesModel):
            return dates_exact_match(model)
        if isinstance(model, InductionModel):
            return repeated_half_loss(model)
        texts = list(VARIED_TEXTS)
    generation = model.info.generation
    if generation is None:
        return embedding_cosine(model, texts)
    if generation == "continuation":
        return next_token_loss(model, texts)
    return output_logprob(model, texts)


# --- what each kind of model computes for a measure, without ablation or inside an ablating block ---------

def unsupported(model) -> CannotMeasure:
    return CannotMeasure("not_measurable", f"head importance has no way to run {model.info.name} "
                         f"({type(model).__name__})")


def sentence_embeddings(model, texts: list[str]) -> Callable[[], torch.Tensor]:
    """A function returning (N, C) mean-pooled last hidden states of the texts, as the model runs then."""
    from headscope.models.hf.model import HFModel
    from headscope.models.minilm import MiniLM

    if isinstance(model, MiniLM):
        batches = [padded([model.tokenize(t)["ids"] for t in texts[i: i + BATCH_SIZE]], model.pad_id)
                   for i in range(0, len(texts), BATCH_SIZE)]

        @torch.no_grad()
        def embed() -> torch.Tensor:
            out = []
            for ids, padding in batches:
                hidden, _ = model.encoder(ids, key_padding_mask=padding)  # (B, T, C)
                keep = (~padding).unsqueeze(-1).float()  # (B, T, 1)
                out.append((hidden * keep).sum(1) / keep.sum(1))  # (B, C)
            return torch.cat(out)  # (N, C)

        return embed
    if isinstance(model, HFModel):
        inputs = [model.inputs(model.encode(t, model.info.max_tokens, False)[0]) for t in texts]

        @torch.no_grad()
        def embed() -> torch.Tensor:
            return torch.stack([model.net(**x).last_hidden_state[0].mean(0) for x in inputs])  # (N, C)

        return embed
    raise unsupported(model)


def token_losses(model, texts: list[str]) -> tuple[Callable[[], float], int]:
    """A function returning the sum of the texts' next-token cross-entropies as the model runs then, and how many
    tokens it predicts (every token but each text's first)."""
    from headscope.models.hf.model import HFModel
    from headscope.models.induction import InductionModel, encode

    if isinstance(model, InductionModel):
        batches = [padded([encode(t) for t in texts[i: i + BATCH_SIZE]], 0) for i in range(0, len(texts), BATCH_SIZE)]

        @torch.no_grad()
        def losses() -> float:
            total = 0.0
            for ids, padding in batches:
                logits, _ = model.net(ids, key_padding_mask=padding)  # (B, T, V)
                loss = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
                total += loss[~padding[:, 1:]].sum().item()  # (B, T-1): only where the predicted token is real
            return total

        return losses, sum(int((~padding[:, 1:]).sum()) for _, padding in batches)
    if isinstance(model, HFModel):
        ids = [torch.tensor([model.encode(t, model.info.max_tokens, False)[0]["input_ids"]]) for t in texts]
        ids = [x for x in ids if x.shape[1] >= 2]  # (1, T): a single token predicts nothing

        @torch.no_grad()
        def losses() -> float:
            total = 0.0
            for x in ids:
                logits = model.net(input_ids=x, attention_mask=torch.ones_like(x)).logits  # (1, T, V)
                total += torch.nn.functional.cross_entropy(logits[0, :-1].float(), x[0, 1:], reduction="sum").item()
            return total

        return losses, sum(x.shape[1] - 1 for x in ids)
    raise unsupported(model)


def output_logprobs(model, texts: list[str]) -> Callable[[], tuple[float, int]]:
    """Writes every text's greedy output now (un-ablated); returns a function giving (sum of the log-probabilities
    of those outputs' tokens, teacher-forced, as the model runs then; how many tokens)."""
    from headscope.models.dates import BOS_ID, EOS_ID, DatesModel, encode_source, pad_batch
    from headscope.models.hf.model import HFModel

    runs: list[tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]] = []  # (logits of decoder input, sequence)
    with torch.no_grad():
        if isinstance(model, DatesModel):
            for i in range(0, len(texts), BATCH_SIZE):
                rows = [encode_source(t.strip()) for t in texts[i: i + BATCH_SIZE]]
                source, mask = pad_batch(rows)  # (B, S), (B, S)
                for row, made in zip(rows, model.net.generate(source, BOS_ID, EOS_ID, mask).tolist(), strict=True):
                    end = made.index(EOS_ID, 1) + 1 if EOS_ID in made[1:] else len(made)
                    x = torch.tensor([row])  # (1, S): alone, no padding
                    runs.append((lambda target, x=x: model.net(x, target)[0], torch.tensor([made[:end]])))
        elif isinstance(model, HFModel):
            for t in texts:
                x = model.inputs(model.encode(t, model.info.max_tokens, False)[0])
                made = model.net.generate(**x, generation_config=model.greedy(model.info.default_new_tokens))  # (1, 1+n)
                runs.append((lambda target, x=x: model.net(**x, decoder_input_ids=target).logits, made))
        else:
            raise unsupported(model)

    @torch.no_grad()
    def logprob() -> tuple[float, int]:
        total, count = 0.0, 0
        for logits_of, sequence in runs:  # sequence (1, 1 + n): the start token, then the output
            logits = logits_of(sequence[:, :-1])  # (1, n, V)
            picked = logits[0].float().log_softmax(-1).gather(1, sequence[0, 1:, None])  # (n, 1)
            total += picked.sum().item()
            count += sequence.shape[1] - 1
        return total, count

    return logprob


def padded(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (B, T) and the padding mask (B, T), True at padding."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, T)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    lengths = torch.tensor([len(r) for r in rows])  # (B,)
    return ids, torch.arange(width)[None, :] >= lengths[:, None]  # (B, T), (B, T)


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


def importance_steps(model: AttentionModel, mode: Mode = "zero", texts: list[str] | None = None,
                     measure: Callable[[], Measure] | None = None) -> Iterator[dict]:
    """The whole measurement, one evaluation of the measure per step: yields {"done", "total"} after each
    (1 baseline + N heads alone + N points of the curve), then {"result": ...}. The first step also prepares
    the measure (its data, and the un-ablated reference where it needs one): `choose_measure(model, texts)`
    unless `measure` makes another (tests use smaller data). Texts are taken as checked (`check_texts`)."""
    if mode not in MODES:
        raise ValueError(f"ablation must be one of {', '.join(MODES)}, not {mode!r}")
    modules, heads = all_heads(model)
    total = 1 + 2 * len(heads)
    measure = measure() if measure is not None else choose_measure(model, texts)
    baseline = measure.evaluate()
    yield {"done": 1, "total": total}

    alone = []
    for head in heads:
        with ablating(modules, Ablation((head,), mode)):
            alone.append(measure.evaluate())
        yield {"done": 1 + len(alone), "total": total}
    sign = 1.0 if measure.direction == "higher_is_better" else -1.0
    importance = [sign * (baseline - q) for q in alone]
    order = sorted(range(len(heads)), key=lambda i: importance[i])  # ascending; stable: ties in module order

    curve = [baseline]
    for k in range(1, len(heads) + 1):
        with ablating(modules, Ablation(tuple(heads[i] for i in order[:k]), mode)):
            curve.append(measure.evaluate())
        yield {"done": 1 + len(heads) + k, "total": total}
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


def head_importance(model: AttentionModel, mode: Mode = "zero", texts: list[str] | None = None,
                    progress: Callable[[int, int], None] | None = None,
                    measure: Callable[[], Measure] | None = None) -> dict:
    """Run `importance_steps` to the end; progress(done, total) after every step."""
    for event in importance_steps(model, mode, texts, measure):
        if "result" in event:
            return event["result"]
        if progress is not None:
            progress(event["done"], event["total"])
    raise RuntimeError("importance_steps ended without a result")
