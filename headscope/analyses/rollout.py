"""Attention rollout: how much each input position reaches each position at the top of a stack.

Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers". The residual connection carries
a token's own state past every attention layer, so each layer is modelled as half attention, half
identity, averaged over its heads:
    Â_l = 0.5 · mean_h A_l^h + 0.5 · I,   rows renormalised to sum to 1
    rollout = Â_{L-1} · … · Â_1 · Â_0      (from the first layer up)
rollout[i, j]: the share of position j in position i after the last layer. Every row sums to 1.

It is defined only where the rows and the columns of a kind are the same tokens (the layout says
so: rows == columns), since the product chains positions through the layers: an encoder's
self-attention, and a causal model's self-attention too (each Â_l is lower triangular, so the
rollout is as well: nothing flows from later tokens). A cross-attention kind has none. For the
decoder of an encoder–decoder, the rollout follows only the decoder's own positions: what enters
them through cross-attention from the encoder is not counted (`not_counted` names those kinds).

Legend: L layers, H heads, T tokens.
"""

import torch

from headscope.models.analysis import Layout


def rollout_kinds(layout: dict[str, Layout]) -> list[str]:
    """The kinds whose rows and columns are the same tokens: the ones a rollout is defined for."""
    return [kind for kind, lay in layout.items() if lay.rows == lay.columns]


def not_counted(layout: dict[str, Layout], kind: str) -> list[str]:
    """Other kinds whose queries are this kind's positions but whose keys are other tokens: what they
    bring into these positions is outside this kind's rollout."""
    rows = layout[kind].rows
    return [other for other, lay in layout.items() if other != kind and lay.rows == rows and lay.columns != rows]


def rollout(pattern: torch.Tensor) -> torch.Tensor:
    """(L, H, T, T) attention weights -> (T, T) rollout, float32 (computed in float64)."""
    L, H, T, _ = pattern.shape
    mixed = 0.5 * pattern.double().mean(dim=1) + 0.5 * torch.eye(T, dtype=torch.float64)  # (L, T, T)
    mixed = mixed / mixed.sum(dim=-1, keepdim=True)  # (L, T, T), rows sum to 1
    out = mixed[0]  # (T, T)
    for layer in range(1, L):
        out = mixed[layer] @ out  # (T, T)
    return out.float()


def rollouts(patterns: dict[str, torch.Tensor], layout: dict[str, Layout]) -> dict[str, torch.Tensor]:
    """kind -> (T, T) rollout, for every kind it is defined for."""
    return {kind: rollout(patterns[kind]) for kind in rollout_kinds(layout)}


COLLAPSED = 0.9  # rollout "collapses" when, on average over its rows, one key holds at least this share


def collapse(rollout_kind: torch.Tensor) -> dict | None:
    """{"key", "mean_weight"} when one key holds at least COLLAPSED of the rollout's rows on average (deep causal
    models without BOS: their first token, ~0.99996 in SmolLM2), where the rollout says little but that; else None."""
    means = rollout_kind.double().mean(dim=0)  # (Tk,): each key's mean weight over the rows
    key = int(means.argmax())
    return {"key": key, "mean_weight": float(means[key])} if means[key] >= COLLAPSED else None


def rollout_about(layout: dict[str, Layout]) -> dict:
    """What an answer's `rollout` holds, for its readers: the formula, the kinds it covers and skips."""
    kinds = rollout_kinds(layout)
    return {
        "formula": "Â_l = 0.5·mean_h(A_l) + 0.5·I, rows renormalised; rollout = Â_{L-1}·…·Â_0 (Abnar & Zuidema 2020); "
                   "computed from the attention weights, whichever `weights` the answer holds",
        "dims": ["query_pos", "key_pos"],
        "kinds": kinds,
        "skipped": {kind: "its rows and columns are different tokens" for kind in layout if kind not in kinds},
        "not_counted": {kind: not_counted(layout, kind) for kind in kinds if not_counted(layout, kind)},
        "rows_sum_to_one": True,
    }
