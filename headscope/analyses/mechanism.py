"""How one head computes its attention for one query, every step written out, on a served model.

"Attention is all you need", section 3.2, for query token i of head h in one layer:
    x              the layer's attention input, every token: what the Q (and, in self-attention,
                   K and V) projections read; after LayerNorm where the block is pre-LN
    q_i, k_j, v_j  this head's slices of the projections, D numbers each
    attn_scores_j  q_i · k_j / √D, then -inf where key j is masked (causal or padding)
    pattern_j      softmax over j of the scores: the row of the pattern the page draws
    z_i            Σ_j pattern_j v_j, this head's result
    heads_z        z_i of all H heads concatenated, C numbers
    output         heads_z @ W_Oᵀ + b_O: the attention's output for token i, what joins the residual

One way for every model, asked through its interface (headscope/models/adapter.py), never by its class: a model
is explainable when its attention modules and their output projections can be reached (`attention_modules()`
and `output_projections()`). The text runs once with the chosen module captured
(headscope/models/interventions.py `capturing`: the q, k, v, scale, mask and any position bias the module
computed), a hook on the module records its input x (and, in cross-attention, the states it reads keys and
values from), and a hook on W_O records the output; `explain_captured` recomputes the steps from those tensors.
What differs by family is said in the answer's `notes`: q and k after rotary position embeddings (Llama), T5's
relative position bias added to the scores and its scale of 1, grouped-query heads sharing keys and values
(query head h reads group h // (H / H_kv)). tests/analyses/test_mechanism.py and test_mechanism_hf.py check the
steps against the model: the pattern row against `analyze`, the output against the module's own forward on the
same x and against W_O's output, x and q against transformers' hidden states and projections.

Legend: Tq query tokens, Tk key tokens, C model width, H heads, H_kv key/value heads, D head width, L layers.
"""


import math
from dataclasses import dataclass

import torch

from headscope.models.analysis import Analysis, AttentionModel


class NotExplainable(ValueError):
    """The model's attention is not our own code, so its steps cannot be replayed here."""


class OutOfRange(ValueError):
    """A kind, layer, head or query that the model or the text does not have."""

    def __init__(self, field: str, value, valid: list, detail: str):
        self.field, self.value, self.valid = field, value, valid
        super().__init__(detail)


def capturable(model: AttentionModel) -> bool:
    """Whether the model's attention modules and their output projections can be reached (headscope/models/hf/model.py)."""
    try:
        modules, projections = model.attention_modules(), model.output_projections()
    except (AttributeError, NotImplementedError):
        return False
    return set(modules) == set(projections)


def require_explainable(model: AttentionModel) -> None:
    if not capturable(model):
        raise NotExplainable(f"explain needs a model whose attention modules and their output projections can be "
                             f"reached (attention_modules() and output_projections()); {model.info.name}'s cannot")


def check_range(field: str, value: int, count: int, what: str) -> None:
    if not 0 <= value < count:
        raise OutOfRange(field, value, [0, count - 1], f"{field} {value} is out of range: {what} {0}..{count - 1}")


def shape_note(shape, axes, of: str, of_shape, of_axes, index: str, note: str | None = None) -> dict:
    """An array's shape and axes, and the module's tensor it is cut from: that tensor's shape and the index."""
    return {"shape": list(shape), "axes": list(axes), "of": of, "of_shape": list(of_shape),
            "of_axes": list(of_axes), "index": index, "note": note}


def explain(model: AttentionModel, text: str, kind: str, layer: int, head: int, query: int,
            truncate: bool = False, new_tokens: int | None = None) -> dict:
    """Analyse `text` as /api/attention does, then every step of one head for one query token.

    Returns tensors, tokens, `shapes` (per array: its shape and axes, and which tensor of the module it is cut
    from, with that tensor's shape and the index taken) and `notes` (what the family adds to the textbook).
    Raises NotExplainable, OutOfRange, or TooManyTokens (from the model).
    """
    require_explainable(model)
    kinds = list(model.info.kinds)
    if kind not in kinds:
        raise OutOfRange("kind", kind, kinds, f"kind {kind!r} is not one of {model.info.name}'s: {', '.join(kinds)}")
    check_range("layer", layer, sum(1 for k, _ in model.attention_modules() if k == kind), f"{kind} has layers")
    check_range("head", head, model.info.heads, "the model has heads")
    analysis, captured = capture_layer(model, text, truncate, new_tokens, kind, layer)
    return explain_captured_analysis(analysis, captured, kind, layer, head, query)


# ---- the run, captured ------------------------------------------------------------------------------------

# Keyword arguments under which attention modules receive the states that cross-attention reads its keys and
# values from (ours: context; BART and T5: key_value_states; BERT-like and GPT-2: encoder_hidden_states).
CONTEXT_ARGUMENTS = ("context", "key_value_states", "encoder_hidden_states")


@dataclass(frozen=True)
class CapturedLayer:
    """One attention module's tensors from the model's forward pass (batch of one, B kept as 1)."""

    record: dict  # headscope/models/interventions.py's capture: query (1, H, Tq, D), key, value (1, H_kv, Tk, D), pattern, z, scale, ...
    x: torch.Tensor  # (Tq, C): the module's input, what its Q projection reads
    context: torch.Tensor | None  # (Tk, C): cross-attention's key/value input; None in self-attention
    output: torch.Tensor  # (Tq, C_out): what W_O returned in the forward pass
    weight: torch.Tensor  # W_O (C_out, H·D) as nn.Linear holds it
    bias: torch.Tensor | None  # b_O (C_out,)
    rotary: bool  # the module was given rotary position embeddings: q and k are rotated by position
    input_bias: bool = True  # whether the Q, K, V projections add biases


@torch.no_grad()
def capture_layer(model: AttentionModel, text: str, truncate: bool, new_tokens: int | None, kind: str,
                  layer: int) -> tuple[Analysis, CapturedLayer]:
    """Analyse `text` with (kind, layer)'s attention module captured: its last call is the pass whose
    patterns the analysis returns (after any generation)."""
    from headscope.models.hf.attention import linear_weight
    from headscope.models.interventions import capturing

    module = model.attention_modules()[(kind, layer)]
    projection = model.output_projections()[(kind, layer)]
    calls, outputs = [], []
    hooks = [module.register_forward_pre_hook(lambda m, args, kwargs: calls.append((args, kwargs)), with_kwargs=True),
             projection.register_forward_hook(lambda m, args, out: outputs.append(out))]
    try:
        with capturing({(kind, layer): module}) as records:
            analysis = model.analyze(text, truncate, new_tokens)
    finally:
        for hook in hooks:
            hook.remove()
    args, kwargs = calls[-1]
    x = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]  # (1, Tq, C)
    context = next((kwargs[name] for name in CONTEXT_ARGUMENTS if kwargs.get(name) is not None), None)  # (1, Tk, C)
    weight, bias = linear_weight(projection)
    return analysis, CapturedLayer(
        record=records[(kind, layer)][-1], x=x[0], context=None if context is None else context[0],
        output=outputs[-1][0], weight=weight, bias=bias, rotary=kwargs.get("position_embeddings") is not None,
        input_bias=has_input_bias(module, projection))


def has_input_bias(module, projection) -> bool:
    """Whether the Q, K, V projections add a bias: any layer of the attention module but W_O with a bias (BERT,
    GPT-2, our own: yes; Llama, T5: no)."""
    return any(getattr(m, "bias", None) is not None and m is not projection and m is not module
               for m in module.modules())


def broadcast_row(tensor: torch.Tensor | None, H: int, Tq: int, Tk: int, query: int) -> torch.Tensor | None:
    """Row `query` of an additive (B or 1, 1 or H, Tq or 1, >= Tk) mask or bias for every head: (H, Tk)."""
    if tensor is None:
        return None
    t = tensor[..., :Tk]
    return torch.broadcast_to(t, (t.shape[0], H, Tq, Tk))[0, :, query]  # (H, Tk)


@torch.no_grad()
def explain_captured(captured: CapturedLayer, head: int, query: int) -> dict[str, torch.Tensor]:
    """Every step of `head` for query `query`, recomputed from the captured q, k, v as the family's eager
    attention computes them: scores = q·k·scale (+ position bias) (+ mask), softmax, z = Σ α v, W_O.

    Same names as explain_query, plus position_bias (Tk,) or None and kv_group.
    """
    r = captured.record
    query4, key4, value4 = r["query"].float(), r["key"].float(), r["value"].float()  # (1, H, Tq, D), (1, H_kv, Tk, D) x 2
    _, H, Tq, D = query4.shape
    _, H_kv, Tk, _ = key4.shape
    # The whole layer, with the same tensor shapes and operations as the families' eager attention, so the
    # numbers match it to the rounding (T5's scores reach the thousands: a different summation order shows).
    k_all = key4.repeat_interleave(H // H_kv, dim=1)  # (1, H, Tk, D): query head h reads group h // (H / H_kv)
    v_all = value4.repeat_interleave(H // H_kv, dim=1)  # (1, H, Tk, D)
    scores = torch.matmul(query4, k_all.transpose(2, 3)) * r["scale"]  # (1, H, Tq, Tk)
    bias = r.get("bias")
    if bias is not None:
        scores = scores + bias[..., :Tk]  # (1, H, Tq, Tk)
    mask = r.get("mask")
    logits = scores
    if mask is not None:
        mask = mask[..., :Tk]
        logits = scores + (mask if mask.is_floating_point() else (~mask) * float("-inf"))  # (1, H, Tq, Tk)
    pattern = torch.softmax(logits, dim=-1)[0, :, query]  # (H, Tk)
    scores = scores[0, :, query]  # (H, Tk)
    bias = broadcast_row(bias, H, Tq, Tk, query)  # (H, Tk) or None
    mask = broadcast_row(mask, H, Tq, Tk, query)  # (H, Tk) or None
    if mask is None:
        masked = torch.zeros(Tk, dtype=torch.bool)
    elif mask.is_floating_point():
        masked = mask[head] <= torch.finfo(mask.dtype).min / 2  # (Tk,): eager masks add the dtype's lowest value
    else:
        masked = ~mask[head]
    z = (pattern[:, None, :] @ v_all[0])[:, 0]  # (H, D)
    heads_z = z.reshape(-1)  # (H·D,), head h at [h*D, (h+1)*D)
    output = torch.nn.functional.linear(heads_z, captured.weight.float(), captured.bias)  # (C_out,)
    q_i = query4[0, :, query]  # (H, D)
    k, v = key4[0], value4[0]  # (H_kv, Tk, D)
    group = head // (H // H_kv)
    return {
        "q": q_i[head], "k": k[group], "v": v[group],
        "attn_scores": scores[head].masked_fill(masked, float("-inf")), "pattern": pattern[head], "masked": masked,
        "position_bias": None if bias is None else bias[head],
        "z": z[head], "heads_z": heads_z, "output": output,
        "qk": q_i[head][None, :] * k[group],  # (Tk, D): row j sums to q_i · k_j
        "kv_group": group,
    }


def captured_notes(captured: CapturedLayer, scale: float, D: int, H: int, H_kv: int, head: int,
                   has_bias: bool) -> list[str]:
    """What this family's attention does beyond the textbook steps, in words."""
    notes = ["x is the input the attention module was given: after the block's LayerNorm where the block is pre-LN"]
    if captured.rotary:
        notes.append("q and k are after the rotary position embedding (RoPE): each pair of their dimensions is rotated "
                     "by the token's position, so q_i · k_j depends on the distance between i and j")
    if H_kv != H:
        notes.append(f"grouped-query attention: {H} query heads share {H_kv} key/value heads; head {head} reads "
                     f"group {head // (H // H_kv)} (h // {H // H_kv})")
    if has_bias:
        notes.append("scores include a relative position bias added before the softmax (T5): q_i · k_j · scale + "
                     "position_bias_j")
    if not math.isclose(scale, D ** -0.5, rel_tol=1e-6):
        notes.append(f"this model scales the scores by {scale:g}, not by 1/√D = {D ** -0.5:.4f}")
    return notes


def explain_captured_analysis(analysis: Analysis, captured: CapturedLayer, kind: str, layer: int, head: int,
                              query: int) -> dict:
    """The answer of `explain`, from the captured module."""
    L, H, Tq, Tk = analysis.patterns[kind].shape
    layout = analysis.layout[kind]
    check_range("query", query, Tq, f"{kind}'s queries ({layout.rows}) are")
    steps = explain_captured(captured, head, query)
    r = captured.record
    H_kv, D = r["key"].shape[1], r["query"].shape[-1]
    C, C_out = captured.x.shape[-1], captured.output.shape[-1]
    g = steps["kv_group"]
    scale = float(r["scale"])
    qkv = ("batch", "head", "query_pos", "d_head")
    kv = ("batch", "kv_head", "key_pos", "d_head")
    sc = ("batch", "head", "query_pos", "key_pos")
    at = f"[0, {head}, {query}]"
    rotated = "after the rotary position embedding" if captured.rotary else None
    shapes = {
        "x": shape_note((Tq, C), ("query_pos", "d_model"), "x", (1, Tq, C),
                        ("batch", "query_pos", "d_model"), "[0]", "the attention module's input"),
        "q": shape_note((D,), ("d_head",), "query", (1, H, Tq, D), qkv, at, rotated),
        "k": shape_note((Tk, D), ("key_pos", "d_head"), "key", (1, H_kv, Tk, D), kv, f"[0, {g}]", rotated),
        "v": shape_note((Tk, D), ("key_pos", "d_head"), "value", (1, H_kv, Tk, D), kv, f"[0, {g}]"),
        "qk": shape_note((Tk, D), ("key_pos", "d_head"), "key", (1, H_kv, Tk, D), kv, f"[0, {g}]",
                         "each row times q elementwise: q_i ⊙ k_j"),
        "scores": shape_note((Tk,), ("key_pos",), "attn_scores", (1, H, Tq, Tk), sc, at,
                             "q·k·scale" + (" + position_bias" if steps["position_bias"] is not None else "")
                             + "; masked: -inf (null in JSON)"),
        "weights": shape_note((Tk,), ("key_pos",), "pattern", (1, H, Tq, Tk), sc, at),
        "z": shape_note((D,), ("d_head",), "z", (1, H, Tq, D), qkv, at),
        "heads_z": shape_note((H * D,), ("d_model",), "z", (1, Tq, H * D), ("batch", "query_pos", "d_model"),
                              f"[0, {query}]", "z after transpose(1, 2).reshape(B, Tq, H·D): the heads concatenated"),
        "output": shape_note((C_out,), ("d_model",), "output", (1, Tq, C_out), ("batch", "query_pos", "d_model"),
                             f"[0, {query}]", "W_O's output"),
    }
    if steps["position_bias"] is not None:
        shapes["position_bias"] = shape_note((Tk,), ("key_pos",), "position_bias", tuple(r["bias"].shape), sc, at)
    if captured.context is not None:
        shapes["context"] = shape_note((Tk, C), ("key_pos", "d_model"), "context", (1, Tk, C),
                                       ("batch", "key_pos", "d_model"), "[0]")
    return {
        "model": analysis.model, "kind": kind, "layer": layer, "head": head, "query": query,
        "name": f"L{layer}H{head}", "layout": layout,
        "query_tokens": analysis.axis(layout.rows), "key_tokens": analysis.axis(layout.columns),
        "heads": H, "d_model": C, "d_head": D, "scale": scale,
        "kv_heads": H_kv, "kv_group": g, "rotary": captured.rotary,
        "biases": {"qkv": captured.input_bias, "output": captured.bias is not None},
        "kv_group_heads": list(range(g * (H // H_kv), (g + 1) * (H // H_kv))),  # the query heads sharing its k, v
        "notes": captured_notes(captured, scale, D, H, H_kv, head, steps["position_bias"] is not None),
        "x": captured.x, "context": captured.context,
        "q": steps["q"], "k": steps["k"], "v": steps["v"], "qk": steps["qk"],
        "scores": steps["attn_scores"], "masked": steps["masked"], "weights": steps["pattern"],
        "position_bias": steps["position_bias"],
        "z": steps["z"], "heads_z": steps["heads_z"], "output": steps["output"],
        "shapes": shapes,
    }
