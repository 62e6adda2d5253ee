"""Value-weighted norms: how much each head actually moves from key j into query i.

Kobayashi, Kuribayashi, Yokoi & Inui 2020, "Attention is not only a weight": a head's output for
query i is Σ_j α_ij f(x_j), with f(x_j) = (x_j W_V^h + b_V^h) W_O^h the value of token j carried
through this head's rows of the output projection. A large weight α_ij on a token whose f(x_j) is
tiny moves almost nothing, so they look at the size of each term:
    value_norm_ij = ‖α_ij f(x_j)‖ = α_ij ‖v_j^h W_O^h‖      (Euclidean norm, in the residual stream)
where v_j^h (D numbers) is head h's value of token j as the model computed it (its V projection and
bias; with grouped-query attention, the value of head h's group h // (H / H_kv)), and W_O^h the D
rows of W_O (in x @ W form) that read head h's slice of the concatenated z. The output projection's
bias is left out: it is added once, not per key. Norms are not probabilities: a row does not sum
to 1, and the numbers are in the units of the model's hidden states.

The values and patterns come from the model's own forward pass (headscope/models/interventions.py `capturing`), and
W_O from the model's `output_projections()`: `out_proj` for headscope/models/attention.py's MultiHeadAttention, and
for a transformers checkpoint the linear layer headscope/models/hf/attention.py found reading the heads' output.

Legend: L layers, H query heads, H_kv key/value heads, Tq query tokens, Tk key tokens, D head width,
C output width.
"""

import torch

from headscope.models.analysis import Analysis, AttentionModel
from headscope.models.hf.attention import linear_weight
from headscope.models.interventions import Ablation, capturing

UNITS = ("‖α_ij f(x_j)‖ = α_ij ‖(x_j W_V^h + b_V^h) W_O^h‖ (Kobayashi et al. 2020): the size of what head h moves "
         "from key j into query i, in the units of the model's hidden states; not a probability, rows do not sum to 1")
PATTERN_TOL = 1e-5  # the captured pattern must be the analysis's pattern (they are the same computation)


class NoValueNorms(ValueError):
    """The model's attention modules or output projections cannot be reached."""


def output_projection(model: AttentionModel, key: tuple[str, int]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """W_O of the attention module computing (kind, layer): (weight (C, H·D) as nn.Linear holds it, bias)."""
    try:
        return linear_weight(model.output_projections()[key])
    except (AttributeError, NotImplementedError) as e:
        raise NoValueNorms(f"{model.info.name}: the output projections of its attention are not known ({e})") from None


def value_sizes(value: torch.Tensor, weight: torch.Tensor, heads: int) -> torch.Tensor:
    """‖v_j^h W_O^h‖ for every head and key: (H, Tk).

    value: (H_kv, Tk, D), one batch element; weight: W_O (C, H·D). Computed as sqrt(v G_h vᵀ) with
    G_h = W_O^h W_O^hᵀ (D, D), so no (H, Tk, C) tensor is ever made.
    """
    H_kv, Tk, D = value.shape
    v = value.repeat_interleave(heads // H_kv, dim=0).double()  # (H, Tk, D): query head h reads group h // (H / H_kv)
    w = weight.detach().double().reshape(weight.shape[0], heads, D).permute(1, 2, 0)  # (H, D, C): W_O^h in x @ W form
    gram = w @ w.transpose(1, 2)  # (H, D, D)
    squared = torch.einsum("htd,hde,hte->ht", v, gram, v)  # (H, Tk)
    return squared.clamp_min(0).sqrt()  # (H, Tk)


@torch.no_grad()
def value_norms(model: AttentionModel, text: str, truncate: bool = False, new_tokens: int | None = None,
                ablation: Ablation | None = None) -> tuple[Analysis, dict[str, torch.Tensor]]:
    """Run `text` once more with every attention module captured; the analysis and, per kind, the
    value-weighted norms (L, H, Tq, Tk) float32 of the same forward pass whose patterns it returns.

    A module runs several times when the model generates (or, with an ablation, runs with and without it);
    the call used is the latest one whose pattern is the analysis's.
    """
    check_value_norms(model)
    modules = model.attention_modules()
    with capturing(modules) as records:
        analysis = model.analyze(text, truncate, new_tokens, ablation)
    # kind -> (L, H, Tq, Tk), filled layer by layer; each layer's records are let go once read, so a long text's
    # captured patterns are not held beside the analysis's and the norms (SmolLM2 at 540 tokens: 315 MB each)
    norms = {kind: torch.empty(patterns.shape, dtype=torch.float32) for kind, patterns in analysis.patterns.items()}
    for (kind, layer), module in sorted(modules.items(), key=lambda item: item[0][1]):
        expected = analysis.patterns[kind][layer]  # (H, Tq, Tk)
        record = next((r for r in reversed(records[(kind, layer)]) if r["pattern"][0].shape == expected.shape
                       and torch.allclose(r["pattern"][0].float(), expected, atol=PATTERN_TOL, rtol=0)), None)
        if record is None:
            raise RuntimeError(f"{model.info.name} {kind} layer {layer}: no captured pattern is the analysis's")
        records[(kind, layer)].clear()
        pattern = record["pattern"][0].float()  # (H, Tq, Tk)
        weight, _ = output_projection(model, (kind, layer))
        sizes = value_sizes(record["value"][0], weight, pattern.shape[0])  # (H, Tk)
        del record
        norms[kind][layer] = pattern.double() * sizes[:, None, :]  # (H, Tq, Tk), rounded to float32
    return analysis, norms  # kind -> (L, H, Tq, Tk)


def check_value_norms(model: AttentionModel) -> None:
    """NoValueNorms, saying why, unless every attention module of the model and its W_O can be reached."""
    try:
        modules = model.attention_modules()
    except (AttributeError, NotImplementedError) as e:
        raise NoValueNorms(f"{model.info.name}: its attention modules cannot be reached ({e})") from None
    for key in modules:
        output_projection(model, key)
