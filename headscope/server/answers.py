"""The one answer builder: what /api/attention, /api/heads and /api/explain answer, built the same way for the
routes, the `headscope` command and the notebook (none of them builds an answer of its own).

An answer describes itself: `dims` names the axes of every attention array, `layout` which tokens index each
kind's rows and columns, `weights` what the arrays hold and in which units, `pool` how far they were
max-pooled, `effect.measures` the axis and meaning of every effect measure, `output_check` what a model checks
of its output.

What /api/attention's `attention` arrays hold (`weights`), and the optional `rollout`, go beyond the raw
attention weights (headscope/analyses/value_norm.py, headscope/analyses/rollout.py):
  weights: "attention"   the pattern, α_ij after softmax: probabilities, every row sums to 1
           "value_norm"  ‖α_ij f(x_j)‖ (Kobayashi et al. 2020): sizes in the hidden states' units; rows do not
                         sum to 1. Costs one more forward pass of the text (with every attention module captured).
  rollout: true          per kind whose rows and columns are the same tokens, the (Tq, Tk) attention rollout
                         (Abnar & Zuidema 2020), from the attention weights whichever `weights` says.
Per-head metrics and roles (`heads`, `similarity`) always describe the attention weights.
"""

import math
from dataclasses import asdict
from functools import partial
from typing import get_args

import torch

from headscope.analyses.heads import head_similarity, kind_sinks, summarize_heads
from headscope.analyses.rollout import collapse, rollout_about, rollouts
from headscope.analyses.value_norm import UNITS, NoValueNorms, check_value_norms, value_norms
from headscope.models.analysis import DIMS, Analysis, AttentionModel
from headscope.models.interventions import Ablation, BadAblation, check_ablation
from headscope.models.metric_choice import choose_metric
from headscope.server.encoding import choice_scale, compress, dumps, max_pool, safetensors_body
from headscope.server.errors import ApiError, ErrorCode
from headscope.server.recent_heads import RecentHeads
from headscope.server.schemas.attention import AblationRequest, AttentionRequest, Weights
from headscope.server.schemas.common import TextRequest

WEIGHTS = get_args(Weights)  # what `attention` may hold: attention weights or value norms


def new_tokens(model: AttentionModel, req: TextRequest) -> int | None:
    """How many tokens the request asks `model` to generate (None: the model's default); 422 for a
    generation field the model has no use for."""
    generation = model.info.generation
    if req.max_new_tokens is not None and generation != "output":
        raise ApiError(ErrorCode.not_generating, f"{model.info.name} does not write an output: max_new_tokens is for "
                       "encoder-decoder models (see `generation` in GET /api/models)")
    if req.generate and generation != "continuation":
        raise ApiError(ErrorCode.not_generating, f"{model.info.name} does not continue text: generate is for causal "
                       "(decoder-only) models (see `generation` in GET /api/models)")
    if req.max_new_tokens is not None and req.max_new_tokens > model.info.max_new_tokens:
        raise ApiError(ErrorCode.too_many_new_tokens, f"{model.info.name} generates at most "
                       f"{model.info.max_new_tokens} tokens; max_new_tokens is {req.max_new_tokens}",
                       limit=model.info.max_new_tokens)
    if generation == "continuation":
        return req.generate
    return req.max_new_tokens


def selected_patterns(analysis: Analysis, req: AttentionRequest, arrays: dict | None = None) -> dict:
    """kind -> ((L, H, Tq, Tk) patterns to send, the pooling block, (L, H) compact scales): every kind, or the one
    head the request names, pooled as it asks. `arrays`: what to send instead of the patterns, of the same shapes
    (value norms). The scales are over the rows that have a choice (encoding.choice_scale), taken before pooling: a
    pooled cell holding a causal first row's 1 is an overflow, not the scale."""
    patterns = analysis.patterns if arrays is None else arrays
    if req.head is not None:
        kind, layer, head = req.head.kind, req.head.layer, req.head.head
        L, H = patterns[kind].shape[:2]
        if layer >= L or head >= H:
            raise ApiError(ErrorCode.no_such_head, f"{kind} has layers 0..{L - 1} and heads 0..{H - 1}; "
                           f"asked for layer {layer}, head {head}")
        patterns = {kind: patterns[kind][layer : layer + 1, head : head + 1]}  # (1, 1, Tq, Tk)
    return {kind: (*max_pool(pattern, req.pool_to), choice_scale(pattern, analysis.layout[kind].causal))
            for kind, pattern in patterns.items()}


def attention_fields(analysis: Analysis, fmt: str, pool: dict, selection: dict | None = None,
                     similarity: bool = False, cut: bool = False, metrics: bool = True) -> dict:
    """Everything /api/attention returns for one analysis, but the attention arrays. `cut`: the text was
    cut to the model's max_chars before it was tokenized; `metrics`: whether `heads` is filled in."""
    return {
        "model": analysis.model,
        "tokens": analysis.tokens,
        "offsets": analysis.offsets,
        "special": analysis.special,
        "words": analysis.words,
        "generated": analysis.generated,
        "truncated": analysis.truncated or cut,
        "dims": list(DIMS),
        "layout": {kind: asdict(layout) for kind, layout in analysis.layout.items()},
        "format": fmt,
        "pool": pool,
        "selection": selection,
        "attention": None,  # filled in by the chosen encoding
        "heads": summarize_heads(analysis) if metrics else None,
        "sinks": kind_sinks(analysis) if metrics else None,
        "roles_of": "one text",
        "similarity": head_similarity(analysis) if similarity else None,
        "output_text": analysis.output_text,
        "output_tokens": analysis.output_tokens,
        "output_special": analysis.output_special,
        "output_words": analysis.output_words,
        "stopped": analysis.stopped,
        "output_probs": analysis.output_probs,
        "output_check": analysis.output_check,
        "image": analysis.image,
    }


def attention_body(analysis: Analysis, req: AttentionRequest, cut: bool, encoding: str | None,
                   max_json_floats: int, model: AttentionModel | None = None, text: str = "",
                   generate: int | None = None, ablation: Ablation | None = None) -> bytes:
    """The answer's bytes, compressed for the client; runs on the model's worker thread."""
    arrays = chosen_weights(analysis, req.weights, model, text, req.truncate, generate, ablation)
    selected = selected_patterns(analysis, req, arrays)
    patterns = {kind: pattern for kind, (pattern, _, _) in selected.items()}
    rollout, rollout_about = rollout_fields(analysis, req.rollout, req.pool_to)
    floats = sum(pattern.numel() for pattern in [*patterns.values(), *(rollout or {}).values()])  # L*H*Tq*Tk per kind
    if req.format == "json" and floats > max_json_floats:  # ~13 bytes of JSON each: refuse before building
        raise ApiError(ErrorCode.answer_too_large, f"the answer has {floats} attention weights; format: json sends at "
                       f"most {max_json_floats} (max_json_floats in GET /api/models limits). Send format: "
                       "safetensors (exact float32) or compact (8-bit), or a shorter text", count=floats,
                       limit=max_json_floats)
    pool = {kind: block for kind, (_, block, _) in selected.items()}
    fields = attention_fields(analysis, req.format, pool, req.head.model_dump() if req.head else None,
                              req.similarity, cut, req.metrics)
    fields.update(weights=weights_about(req.weights, patterns), rollout_about=rollout_about)
    fields.update(ablation_fields(analysis, req))
    if req.format in ("compact", "safetensors"):
        scales = {kind: scale for kind, (_, _, scale) in selected.items()}
        return compress(safetensors_body(patterns, fields, exact=req.format == "safetensors", rollout=rollout,
                                         scales=scales), encoding)
    attention = {kind: pattern.numpy() for kind, pattern in patterns.items()}
    json_rollout = None if rollout is None else {kind: r.numpy() for kind, r in rollout.items()}
    return compress(dumps({**fields, "attention": attention, "rollout": json_rollout}), encoding)


def requested_ablation(model: AttentionModel, req: AblationRequest) -> Ablation | None:
    """The heads the request knocks out, checked against the model: 422 naming the problem; None for none.
    The limit on `ablate` is the model's own number of heads (every kind's layers x heads): more must repeat one."""
    if not req.ablate:
        choose_metric(model, req.metric, req.span, req.answer, req.wrong)  # a metric without heads: still checked
        return None
    try:
        modules = model.attention_modules()
    except NotImplementedError as e:
        raise ApiError(ErrorCode.not_ablatable, f"{e}; ablate is not available for {model.info.name}",
                       field="ablate") from None
    limit = len(modules) * model.info.heads
    if len(req.ablate) > limit:
        raise ApiError(ErrorCode.too_many_heads, f"ablate lists {len(req.ablate)} heads but {model.info.name} has "
                       f"{limit} (every kind's layers x {model.info.heads} heads)", count=len(req.ablate), limit=limit,
                       field="ablate")
    heads = [(h.kind, h.layer, h.head) for h in req.ablate]
    seen: set = set()
    twice = next((h for h in heads if h in seen or seen.add(h)), None)  # one pass: the list may be long
    if twice is not None:
        raise ApiError(ErrorCode.bad_ablation, f"ablate names {twice[0]} layer {twice[1]} head {twice[2]} twice",
                       field="ablate")
    ablation = Ablation(tuple(heads), req.ablation, choose_metric(model, req.metric, req.span, req.answer, req.wrong))
    try:
        check_ablation(ablation, modules, model.info.heads)
    except BadAblation as e:
        raise ApiError(ErrorCode.bad_ablation, str(e), field="ablate") from None
    return ablation


def ablation_fields(analysis: Analysis, req: AttentionRequest) -> dict:
    """The answer's ablate, ablation and effect (headscope/models/effect.py): what was knocked out and what it changed."""
    return {
        "ablate": [h.model_dump() for h in req.ablate],
        "ablation": req.ablation if req.ablate else None,
        "effect": analysis.effect,
    }


def heads_key(model: AttentionModel, text: str | tuple, cut: bool, truncate: bool, generate: int | None,
              ablation: Ablation | None) -> tuple:
    """What determines a text's per-head metrics: the same for /api/attention and /api/heads."""
    return (model.info.name, text, cut, truncate, generate, ablation)


def heads_fields(analysis: Analysis, cut: bool) -> dict:
    """The /api/heads answer for one analysis."""
    return {"model": analysis.model, "tokens": analysis.tokens, "truncated": analysis.truncated or cut,
            "heads": summarize_heads(analysis), "sinks": kind_sinks(analysis)}


def remember_heads(recent: RecentHeads, key: tuple, analysis: Analysis, cut: bool) -> None:
    """Keep an analysis for its /api/heads answer; on the model's thread, after its weights were sent."""
    recent.keep(key, partial(heads_fields, analysis, cut))


def explanation_json(steps: dict) -> dict:
    """Tensors as arrays, -infinity scores as null, the layout as a dict."""
    out = {name: value.contiguous().numpy() if isinstance(value, torch.Tensor) else value for name, value in steps.items()}
    out["scores"] = [None if math.isinf(s) else s for s in steps["scores"].tolist()]
    out["layout"] = asdict(steps["layout"])
    return out


# ---- weights and rollout -------------------------------------------------------------------------------

ATTENTION_ABOUT = ("α_ij = softmax_j(q_i · k_j / √D + mask): how much query i reads key j; probabilities, every row "
                   "sums to 1")


def check_weights_request(model: AttentionModel, weights: str) -> None:
    """422 naming why, when the model cannot give what `weights` asks for."""
    if weights == "value_norm":
        try:
            check_value_norms(model)
        except NoValueNorms as e:
            raise ApiError(ErrorCode.no_value_norms, f"weights: value_norm is not available for {model.info.name}: {e}") from None


def chosen_weights(analysis: Analysis, weights: str, model: AttentionModel, text: str, truncate: bool,
                   new_tokens: int | None, ablation: Ablation | None = None) -> dict[str, torch.Tensor]:
    """kind -> (L, H, Tq, Tk) arrays the answer's `attention` holds: the patterns, or their value norms (from
    one more run of the same text, with the same heads ablated, whose patterns must be the analysis's)."""
    if weights == "attention":
        return analysis.patterns
    again, norms = value_norms(model, text, truncate, new_tokens, ablation)
    if again.tokens != analysis.tokens or again.output_tokens != analysis.output_tokens:
        raise RuntimeError("the text ran to different tokens the second time")
    return norms


def weights_about(weights: str, arrays: dict[str, torch.Tensor]) -> dict:
    """The answer's self-description of its `attention` arrays: what they are, their units, whether rows sum to
    1, and each kind's largest value (the top of a colour scale)."""
    largest = {kind: float(a.max()) if a.numel() else 0.0 for kind, a in arrays.items()}
    if weights == "attention":
        return {"name": "attention", "label": "attention weight", "description": ATTENTION_ABOUT,
                "units": "probability", "rows_sum_to_one": True, "max": largest}
    return {"name": "value_norm", "label": "value norm ‖α f(x)‖", "description": UNITS,
            "units": "norm of a hidden-state vector", "rows_sum_to_one": False, "max": largest}


def rollout_fields(analysis: Analysis, wanted: bool, pool_to: int | None) -> tuple[dict | None, dict | None]:
    """(kind -> (Tq, Tk) rollout, max-pooled as the attention is; and its description), or (None, None)."""
    if not wanted:
        return None, None
    full = rollouts(analysis.patterns, analysis.layout)
    pooled = {kind: max_pool(r[None, None], pool_to) for kind, r in full.items()}
    about = rollout_about(analysis.layout)
    about["collapsed"] = {kind: collapse(r) for kind, r in full.items()}  # one key taking (nearly) everything
    about["pool"] = {kind: block for kind, (_, block) in pooled.items()}
    about["rows_sum_to_one"] = all(block == [1, 1] for block in about["pool"].values())  # max-pooled cells do not
    return {kind: r[0, 0] for kind, (r, _) in pooled.items()}, about

