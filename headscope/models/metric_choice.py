"""One metric choice for ablation, importance and patching: what a causal LM's run is scored by.

The names and their meanings are defined here once; headscope/models/effect.py (an ablation's `effect.metric`),
headscope/analyses/importance.py (`metric_measure`) and headscope/analyses/patching.py all read them. It lives in
models/ (not analyses/) because an ablation's effect is computed in the model layer, which never imports analyses/.

  loss        mean next-token cross-entropy (nats per token) of the tokens in `span` = [start, end) of the text's
              `tokens`: token j is predicted by position j - 1, so 1 <= start < end <= T (T tokens); default
              [1, T), every token that has a prediction
  logit_diff  logit(answer) - logit(wrong) at the last position: the model's prediction of the token after the text
  prob        the answer's probability there (softmax over the whole vocabulary)
  embedding_cosine   (patching only: an encoder's metric) the cosine of the run's sentence embedding to the clean run's

`answer` and `wrong` are texts that must each be exactly one token of the model's output (`one_token`).
Ablation and importance take loss / logit_diff / prob on causal LMs only (generation "continuation"): an
encoder predicts no token, and an encoder–decoder's output is its own greedy writing, whose loss and answer are
already what their default measures score (BadMetric `no_metric` says so).

Legend: T tokens, N = T - 1 predicted positions, V vocabulary.
"""

from dataclasses import dataclass
from typing import Literal

import torch

MetricName = Literal["loss", "logit_diff", "prob"]
METRIC_NAMES: tuple[MetricName, ...] = ("loss", "logit_diff", "prob")  # what ablation and importance take
METRIC_GENERATIONS = ("continuation",)  # the ModelInfo.generation of the models that take them: causal LMs

METRIC_ABOUT = {  # name -> (what it is, units, which way is better)
    "loss": ("mean next-token cross-entropy over the span [start, end) of the tokens (token j is predicted by "
             "position j - 1)", "nats per token", "lower_is_better"),
    "logit_diff": ("logit(answer) - logit(wrong)", "logits", "higher_is_better"),
    "prob": ("the probability of the answer (softmax over the vocabulary)", "probability", "higher_is_better"),
    "embedding_cosine": ("cosine of the run's sentence embedding (mean of the final hidden states over every token) "
                         "to the clean run's", "cosine", "higher_is_better"),
}
LAST_POSITION = "the last position: the prediction of the token after the text"


class BadMetric(ValueError):
    """A metric choice that cannot run: `code` names the problem (headscope/server/errors.py ErrorCode)."""

    def __init__(self, code: str, message: str, **extra):
        self.code, self.extra = code, extra
        super().__init__(message)


@dataclass(frozen=True)
class Token:
    text: str
    id: int
    token: str

    def describe(self) -> dict:
        return {"text": self.text, "id": self.id, "token": self.token}


def one_token(model, text: str | None, field: str) -> Token:
    """The text as one token of the model's output; BadMetric when it is missing or not exactly one token."""
    if text is None:
        raise BadMetric("validation_error", f"{field} is required for this metric: give the token as text", field=field)
    ids, tokens = model.output_ids(text)
    if len(ids) != 1:
        raise BadMetric("not_one_token", f"{field} {text!r} is {len(ids)} tokens for {model.info.name} "
                        f"({' | '.join(tokens) or 'none'}); give a text that is exactly one token",
                        field=field, tokens=tokens)
    return Token(text, ids[0], tokens[0])


@dataclass(frozen=True)
class MetricChoice:
    """A checked choice: the name, the span asked for (None: every predicted token), the answer and wrong tokens."""

    name: MetricName
    span: tuple[int, int] | None = None
    answer: Token | None = None
    wrong: Token | None = None

    def span_of(self, tokens: int) -> tuple[int, int]:
        """[start, end) within a text of `tokens` tokens; BadMetric out_of_range naming the valid range."""
        if tokens < 2:
            raise BadMetric("nothing_to_predict", f"the text is {tokens} token: loss needs a token after the first")
        start, end = self.span or (1, tokens)
        if not 1 <= start < end <= tokens:
            raise BadMetric("out_of_range", f"span [{start}, {end}) is out of range: the text has {tokens} tokens, and "
                            f"token j is predicted by position j - 1, so the span must satisfy 1 <= start < end <= "
                            f"{tokens}", field="span", valid=[1, tokens])
        return start, end

    def value(self, logits: torch.Tensor, next_logits: torch.Tensor, targets: list[int]) -> float:
        """The metric of one causal run: logits (N, V), row i predicting targets[i] = tokens[i + 1]; next_logits (V,)
        the prediction after the last token."""
        if self.name == "loss":
            start, end = self.span_of(len(targets) + 1)
            rows = torch.arange(start - 1, end - 1)  # (n,) position j - 1 predicts token j
            index = torch.tensor(targets, dtype=torch.long)[rows]  # (n,)
            return -logits[rows].float().log_softmax(-1).gather(1, index[:, None]).mean().item()
        last = next_logits.float()  # (V,)
        if self.name == "prob":
            return last.softmax(-1)[self.answer.id].item()
        return (last[self.answer.id] - last[self.wrong.id]).item()

    def describe(self, tokens: int | None = None) -> dict:
        """{name, description, units, where, span, answer, wrong}; tokens: the text's, to give the span used."""
        description, units, _ = METRIC_ABOUT[self.name]
        span = list(self.span_of(tokens)) if self.name == "loss" and tokens is not None else (
            list(self.span) if self.span else None)
        where = (f"tokens [{span[0]}, {span[1]}) of `tokens`" if span else "every token after the first") \
            if self.name == "loss" else LAST_POSITION
        return {"name": self.name, "description": description, "units": units, "where": where, "span": span,
                "answer": self.answer and self.answer.describe(), "wrong": self.wrong and self.wrong.describe()}


def choose_metric(model, name: str | None, span: tuple[int, int] | list[int] | None = None, answer: str | None = None,
                  wrong: str | None = None) -> MetricChoice | None:
    """The request's metric fields checked against the model (BadMetric names the problem); None when no metric is
    asked for and none of its fields is given."""
    if name is None:
        if span is not None or answer is not None or wrong is not None:
            field = "span" if span is not None else "answer" if answer is not None else "wrong"
            raise BadMetric("validation_error", f"{field} belongs to a metric: give metric too (one of "
                            f"{', '.join(METRIC_NAMES)})", field=field)
        return None
    if name not in METRIC_NAMES:
        raise BadMetric("validation_error", f"metric must be one of {', '.join(METRIC_NAMES)}, not {name!r}",
                        field="metric")
    generation = model.info.generation
    if generation is None:
        raise BadMetric("no_metric", f"{model.info.name} is an encoder: it predicts no token, so {name} has no "
                        "meaning (its effect and importance are measured by embedding cosine)", field="metric")
    if generation not in METRIC_GENERATIONS:
        raise BadMetric("no_metric", f"{model.info.name} is an encoder-decoder: its output is its own greedy writing, "
                        "whose log-probability its default measures already score; metric is for causal LMs (for an "
                        "answer at one output step use POST /api/patch with step)", field="metric")
    if name != "loss" and span is not None:
        raise BadMetric("validation_error", f"span is for metric loss; {name} is read at the last position",
                        field="span")
    if name == "loss" and (answer is not None or wrong is not None):
        raise BadMetric("validation_error", "answer and wrong are for metric logit_diff and prob; loss scores the "
                        "text's own tokens", field="answer" if answer is not None else "wrong")
    if name == "prob" and wrong is not None:
        raise BadMetric("validation_error", "wrong is for metric logit_diff; prob reads the answer only",
                        field="wrong")
    if span is not None:
        if len(span) != 2 or not span[0] < span[1]:
            raise BadMetric("validation_error", f"span must be [start, end) with start < end, not {list(span)}",
                            field="span")
        span = (int(span[0]), int(span[1]))
    return MetricChoice(name, span, one_token(model, answer, "answer") if name != "loss" else None,
                        one_token(model, wrong, "wrong") if name == "logit_diff" else None)
