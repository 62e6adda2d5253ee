"""What knocking heads out does to a model's output: the `effect` of an ablated Analysis.

A model adapter asked for an ablation (headscope/models/interventions.py) runs the text twice on the same token ids:
first as it is, then with the heads knocked out. A model that generates generates only in the first
run; the second reads the same tokens (for an encoder–decoder: the same output, teacher-forced), so
every pattern, position and number below lines up with the un-ablated answer. What is measured
depends on what the model computes, decided from its ModelInfo (see `effect_type`), never from names:

  encoder-only (no generation)
    embedding_cosine  cosine of the sentence embeddings, each the mean of the final hidden states over
                      every token of the text, special tokens included (sentence-transformers' mean
                      pooling of all-MiniLM-L6-v2; its final normalisation does not change a cosine)
    token_cosine[i]   cosine of token i's final hidden state, before and after
  decoder-only (generation "continuation")
    logprob_before[i], logprob_after[i]
                      log P(tokens[i + 1] | tokens[0..i]): position i's log-probability of the token
                      that actually follows it, i = 0 .. T-2 (the last position has no next token)
    targets[i]        tokens[i + 1], the token whose log-probability it is
    loss_change       mean next-token loss (nats) after minus before: mean(logprob_before - logprob_after)
    metric            with a metric choice (headscope/models/metric_choice.py: loss on a span, logit_diff, prob):
                      {name, units, where, span, answer, wrong, before, after, change = after - before}
  encoder–decoder (generation "output")
    output_text       the output generated again, greedily, with the heads knocked out
    logprob_before[i], logprob_after[i]
                      decoder row i's log-probability of the token it produced in the original output
                      (output_tokens[i + 1]; for the last row, the end token or the last token), teacher-forced
    targets[i]        that token
    loss_change       as for decoder-only models, over the decoder rows

`measures` maps every measure present to {axis, meaning}: axis names the token sequence whose
position i value[i] belongs to ("tokens" or "output_tokens"; null for one number or a text).

Mean ablation (headscope/models/interventions.py) uses the mean over the query positions of the pass being run: in
the teacher-forced pass that is every position of the sequence (a constant per text, so it carries a
little of the later positions into the earlier ones); while generating, every step re-runs the whole
prefix without a cache, so it is the mean over the prefix generated so far.
"""

from typing import Literal

import torch

from headscope.models.analysis import ModelInfo
from headscope.models.interventions import Ablation, BadAblation, check_ablation
from headscope.models.metric_choice import MetricChoice

EffectType = Literal["encoder", "decoder", "encoder-decoder"]

MEANINGS = {
    "embedding_cosine": "Cosine similarity of the sentence embedding (mean of the final hidden states over every "
    "token, special tokens included, as sentence-transformers pools) with and without the ablation: 1 = unchanged.",
    "token_cosine": "Per token: cosine similarity of its final hidden state with and without the ablation.",
    "targets": "Per position: the token whose log-probability logprob_before and logprob_after give (the token "
    "that follows it, or the token that decoder row produced).",
    "logprob_before": "Per position: the log-probability (natural log) the un-ablated model gives the token in "
    "`targets`.",
    "logprob_after": "Per position: the same log-probability with the heads ablated (teacher-forced: same tokens).",
    "loss_change": "Mean next-token loss (nats) with the ablation minus without: mean(logprob_before - "
    "logprob_after). Positive: the heads helped.",
    "metric": "The metric asked for (loss over a span of the tokens, logit_diff or prob at the last position; "
    "headscope/models/metric_choice.py) without the ablation (`before`), with it (`after`), and change = after - "
    "before, in `units`.",
    "output_text": "The output generated again, greedily, with the heads ablated (compare output_text).",
}


def effect_type(info: ModelInfo) -> EffectType:
    """What the model computes, from how it generates: "encoder", "decoder" or "encoder-decoder"."""
    if info.generation == "output":
        return "encoder-decoder"
    if info.generation == "continuation":
        return "decoder"
    return "encoder"


def active_ablation(model, ablation: Ablation | None) -> Ablation | None:
    """The ablation if it knocks out any head, checked against the model (BadAblation names the problem);
    None when there is nothing to knock out."""
    if ablation is None:
        return None
    try:
        modules = model.attention_modules()
    except NotImplementedError as e:
        raise BadAblation(f"{e}; ablation is not available for this model") from None
    check_ablation(ablation, modules, model.info.heads)
    return ablation if ablation.heads else None


def measures(names: dict[str, str | None]) -> dict[str, dict]:
    """name -> axis for every measure present -> {axis, meaning}."""
    return {name: {"axis": axis, "meaning": MEANINGS[name]} for name, axis in names.items()}


def encoder_effect(before: torch.Tensor, after: torch.Tensor) -> dict:
    """before, after: (T, C) final hidden states of one text's tokens (no padding)."""
    cos = torch.nn.functional.cosine_similarity
    embedding = cos(before.mean(0), after.mean(0), dim=0)  # () the mean-pooled embeddings
    per_token = cos(before, after, dim=-1)  # (T,)
    return {
        "embedding_cosine": embedding.item(),
        "token_cosine": per_token.tolist(),
        "measures": measures({"embedding_cosine": None, "token_cosine": "tokens"}),
    }


def logprob_effect(logits_before: torch.Tensor, logits_after: torch.Tensor, targets: list[int],
                   target_tokens: list[str], axis: str) -> dict:
    """logits_*: (N, V), row i predicting targets[i]; the log-probabilities and the loss change."""
    index = torch.tensor(targets, dtype=torch.long)[:, None]  # (N, 1)
    before = logits_before.float().log_softmax(-1).gather(1, index)[:, 0]  # (N,)
    after = logits_after.float().log_softmax(-1).gather(1, index)[:, 0]  # (N,)
    return {
        "targets": target_tokens,
        "logprob_before": before.tolist(),
        "logprob_after": after.tolist(),
        "loss_change": (before - after).mean().item() if len(targets) else None,
        "measures": measures({"targets": axis, "logprob_before": axis, "logprob_after": axis, "loss_change": None}),
    }


def output_effect(made: list[int], made_tokens: list[str], logits_before: torch.Tensor, logits_after: torch.Tensor,
                  output_text: str) -> dict:
    """An encoder–decoder's effect: made (N,) the ids decoder rows 0..N-1 produced; logits (N, V) teacher-forced;
    output_text the output regenerated with the ablation."""
    effect = logprob_effect(logits_before, logits_after, made, made_tokens, "output_tokens")
    effect["output_text"] = output_text
    effect["measures"] = {"output_text": {"axis": None, "meaning": MEANINGS["output_text"]}, **effect["measures"]}
    return effect


def metric_effect(metric: MetricChoice, prepared, before, after) -> dict:
    """The chosen metric of a causal LM's run without and with the ablation (same tokens)."""
    values = [metric.value(out.logits, out.next_logits, prepared.targets) for out in (before, after)]
    return {**metric.describe(len(prepared.targets) + 1), "before": values[0], "after": values[1],
            "change": values[1] - values[0]}


def effect_of(info: ModelInfo, prepared, before, after, regenerated: str | None,
              metric: MetricChoice | None = None) -> dict:
    """What an ablation changed in one text's run: `before` and `after` are the Outputs of the same prepared text
    (headscope/models/adapter.py) without and with it; `regenerated`, an encoder–decoder's output written again;
    `metric`, a causal LM's chosen metric (metric_choice.choose_metric refuses it for the others)."""
    kind = effect_type(info)
    if kind == "encoder":
        return encoder_effect(before.hidden, after.hidden)
    if kind == "decoder":
        effect = logprob_effect(before.logits, after.logits, prepared.targets, prepared.target_tokens, "tokens")
        if metric is not None:
            effect["metric"] = metric_effect(metric, prepared, before, after)
            effect["measures"]["metric"] = {"axis": None, "meaning": MEANINGS["metric"]}
        return effect
    return output_effect(prepared.targets, prepared.target_tokens, before.logits, after.logits, regenerated)
