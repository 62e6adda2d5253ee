"""Direct logit attribution: how much each head and each MLP writes directly into logit(answer) - logit(wrong).

In a pre-norm transformer the residual stream entering the final norm at position p is a sum of what was written
into it (Elhage et al. 2021, "A mathematical framework for transformer circuits"):
    x = embed + Σ_layers Σ_heads z_h W_O^h + Σ_layers b_O + Σ_layers (mlp_out - b_out) + Σ_layers b_out
and the logits are  l = c · norm(x) @ W_U.T + b_U. The final norm is not linear in x: its scale
    LayerNorm  norm(x) = s γ ⊙ (x - mean(x)) + β,     RMSNorm  norm(x) = s γ ⊙ x,     s = 1 / sqrt(var or mean(x²) + ε)
depends on the whole x. With s held at its value in this run (frozen, as TransformerLens' `apply_ln_to_stack` does),
the norm is linear, and every part's direct contribution to the difference of two logits is
    contribution(part) = c · s · ((W_U[answer] - W_U[wrong]) ⊙ γ) · centre(part)      (centre: minus its mean, LayerNorm)
while β and b_U add the constants c · (W_U[answer] - W_U[wrong]) · β and b_U[answer] - b_U[wrong]. The parts then add up
to the model's own logit difference exactly (up to float rounding; `error` says by how much). c is 1 except in
families that scale between the norm and the unembedding (T5 multiplies by d_model^-0.5); s and c are measured from
the run itself (the norm's output and the logits), and the form (LayerNorm or RMSNorm) is the one that reproduces the
norm's output, so no family's attribute names are needed.

"Direct" means only the path from a component straight to the logits: what a head does through later layers is not
counted here (activation patching, headscope/analyses/patching.py, measures the total effect).

Where it has no meaning, AttributionError says why: an encoder (no unembedding), a post-norm model (BART: the stream
is normalised inside every layer, so it is not a sum), a final norm of another form.

Legend: H heads, D head width, C model width, V vocabulary.
"""

import torch

from headscope.analyses.heads import head_name
from headscope.analyses.patching import CannotPatch, one_token
from headscope.models.analysis import AttentionModel, cut_to_chars
from headscope.models.hf.attention import linear_weight
from headscope.models.interventions import capturing

TOLERANCE = 1e-5  # |sum of the parts - the model's logit difference| allowed, relative to max(1, |difference|)
FIT = 1e-4  # how closely a norm form, or the readout scale, must reproduce the model's own numbers (relative)
FROZEN = ("the final norm's scale s = 1/sqrt(var(x) + eps) (or, for RMSNorm, 1/sqrt(mean(x^2) + eps)) is taken from "
          "this run and held fixed, so that the norm is linear and the parts add up to the model's logit difference")


class AttributionError(CannotPatch):
    """Direct logit attribution has no meaning for this model or cannot be computed: `code` says which."""


def close(a: torch.Tensor, b: torch.Tensor, tol: float = FIT) -> bool:
    return bool((a - b).abs().max() <= tol * max(1.0, b.abs().max().item()))


def norm_form(norm, x: torch.Tensor, y: torch.Tensor) -> tuple[str, float, torch.Tensor, torch.Tensor | None]:
    """(form, s, γ, β) such that y = s γ ⊙ centre(x) + β (β None: the norm has no bias): the form, LayerNorm or
    RMSNorm, that reproduces the norm's own output y for its input x (both (C,), float64); AttributionError if
    neither does."""
    gamma = norm.weight.detach().double() if getattr(norm, "weight", None) is not None else torch.ones_like(x)
    beta = norm.bias.detach().double() if getattr(norm, "bias", None) is not None else None
    forms = ("LayerNorm", "RMSNorm") if isinstance(norm, torch.nn.LayerNorm) else ("RMSNorm", "LayerNorm")
    for form in forms:
        v = gamma * (x - x.mean() if form == "LayerNorm" else x)  # (C,)
        shift = 0 if beta is None else beta
        s = ((y - shift) @ v / (v @ v)).item()
        if close(s * v + shift, y):
            return form, s, gamma, beta
    raise AttributionError("not_attributable", f"the final norm ({type(norm).__name__}) is neither a LayerNorm nor an "
                           "RMSNorm of its weight and bias, so its frozen-scale form is not known")


def attribute(model: AttentionModel, text: str, answer: str, wrong: str, step: int | None = None) -> dict:
    """Direct logit attribution of logit(answer) - logit(wrong) at the last position (a causal LM) or at output step
    `step` of the greedy output, teacher-forced (an encoder–decoder). The answer (see the module docstring)."""
    info = model.info
    try:
        readout = model.readout()
        modules, points = model.attention_modules(), model.hook_points()
        projections, mlps = model.output_projections(), model.mlp_projections()
    except NotImplementedError as e:
        raise AttributionError("not_attributable", f"direct logit attribution has no meaning for {info.name}: {e}") \
            from None
    if info.generation != "output" and step is not None:
        raise AttributionError("not_attributable", f"{info.name} does not write an output: step is for "
                               "encoder-decoder models", field="step")
    cut_to_chars(info, text, truncate=False)
    a, w = one_token(model, answer, "answer"), one_token(model, wrong, "wrong")
    stack = readout.stack
    with torch.no_grad():
        prepared = model.prepare(text, new_tokens=0 if info.generation == "continuation" else None)
    if info.generation == "output":
        steps = len(prepared.targets)
        step = 0 if step is None else step
        if not 0 <= step < steps:
            raise AttributionError("out_of_range", f"step {step} is out of range: the output has {steps} steps "
                                   f"(0..{steps - 1})", field="step", valid=[0, steps - 1])
        p = step
    else:
        p = len(prepared.fields["tokens"]) - 1
    rows = info.kinds[stack].rows
    kinds = [kind for kind, layout in info.kinds.items() if layout.rows == rows]  # the attention writing into the stream
    layers = sum(1 for k, _ in mlps if k == stack)
    places = {**{key: m for key, m in modules.items() if key[0] in kinds},
              **{key: pt for key, pt in points.items() if key[1] in (stack, *kinds)}}
    with torch.no_grad(), capturing(places) as records:
        out = model.forward([prepared])[0]
    logits = (out.next_logits if step is None else out.logits[step]).double()  # (V,)

    def stream(point: str, kind: str, layer: int) -> torch.Tensor:
        return records[(point, kind, layer)][-1]["x"][0, p].double()  # (C,)

    parts: list[tuple[dict, torch.Tensor]] = [(component("embed", "embed"), stream("resid_pre", stack, 0))]
    for layer in range(layers):
        for kind in kinds:
            if (kind, layer) not in modules:
                continue
            z = records[(kind, layer)][-1]["z"][0, :, p].double()  # (H, D)
            H, D = z.shape
            weight, bias = linear_weight(projections[(kind, layer)])  # (C, H·D), (C,)
            weight = weight.detach().double()
            heads = [weight[:, h * D:(h + 1) * D] @ z[h] for h in range(H)]  # H x (C,)
            prefix = "" if len(kinds) == 1 else f"{kind} "
            parts += [(component(prefix + head_name(layer, h), "head", kind, layer, h), heads[h]) for h in range(H)]
            written = torch.stack(heads).sum(0)  # (C,)
            if bias is not None:
                parts.append((component(f"{prefix}L{layer} attention bias b_O", "bias", kind, layer), bias.double()))
                written = written + bias.double()
            if not close(written, stream("attn_out", kind, layer)):
                raise AttributionError("not_attributable", f"{kind} layer {layer}: the heads through W_O do not give the "
                                       "attention output the model adds")
        mlp_out = stream("mlp_out", stack, layer)
        _, bias = linear_weight(mlps[(stack, layer)])
        if bias is None:
            parts.append((component(f"L{layer} MLP", "mlp", stack, layer), mlp_out))
        else:
            parts.append((component(f"L{layer} MLP", "mlp", stack, layer), mlp_out - bias.detach().double()))
            parts.append((component(f"L{layer} MLP bias b_out", "bias", stack, layer), bias.detach().double()))
    x = stream("resid_final", stack, layers)  # (C,)
    total_stream = torch.stack([v for _, v in parts]).sum(0)
    if not close(total_stream, x):
        raise AttributionError("not_attributable", f"{info.name}'s residual stream entering the final norm is not the sum "
                               "of the embeddings and the layers' outputs (largest difference "
                               f"{(total_stream - x).abs().max().item():.3g}): a post-norm model normalises inside "
                               "every layer, so no part writes directly to the logits")

    with torch.no_grad():
        y = readout.norm(x.to(readout.weight.dtype)[None, None])[0, 0].double()  # (C,)
    form, s, gamma, beta = norm_form(readout.norm, x, y)
    W = readout.weight.detach().double()  # (V, C)
    b = None if readout.bias is None else readout.bias.detach().double()
    plain = y @ W.T  # (V,): the logits before any scale and bias
    c = ((logits - (0 if b is None else b)) @ plain / (plain @ plain)).item()
    if not close(c * plain + (0 if b is None else b), logits):
        raise AttributionError("not_attributable", f"{info.name}'s logits are not the unembedding of its final norm's "
                               "output (times a constant), so the parts cannot be read through it")
    u = W[a["id"]] - W[w["id"]]  # (C,)
    direction = c * s * u * gamma  # (C,)
    components = []
    for about, vector in parts:
        centred = vector - vector.mean() if form == "LayerNorm" else vector
        components.append({**about, "value": (direction @ centred).item()})
    if beta is not None:
        components.append({**component("final norm bias β", "bias"), "value": (c * u @ beta).item()})
    if b is not None:
        components.append({**component("unembedding bias b_U", "bias"), "value": (b[a["id"]] - b[w["id"]]).item()})
    total = (logits[a["id"]] - logits[w["id"]]).item()
    summed = sum(x["value"] for x in components)
    position_axis = info.kinds[stack].rows
    position_tokens = prepared.fields["tokens"] if position_axis == "tokens" else prepared.fields["output_tokens"]
    return {
        "model": info.name,
        "text": text,
        "tokens": prepared.fields["tokens"],
        "output_tokens": prepared.fields.get("output_tokens"),
        "step": step,
        "position": p,
        "position_axis": position_axis,
        "position_token": position_tokens[p],
        "answer": a,
        "wrong": w,
        "metric": "logit(answer) - logit(wrong)",
        "components": components,
        "total": total,
        "sum": summed,
        "error": summed - total,
        "tolerance": TOLERANCE * max(1.0, abs(total)),
        "norm": {"form": form, "scale": s, "readout_scale": c, "frozen": True, "about": FROZEN},
        "about": "each component's direct contribution: the change it writes into the residual stream, read through "
        "the frozen final norm and the unembedding; components add up to `total`, the model's own logit difference",
    }


def component(name: str, type_: str, kind: str | None = None, layer: int | None = None, head: int | None = None) -> dict:
    return {"name": name, "type": type_, "kind": kind, "layer": layer, "head": head}
