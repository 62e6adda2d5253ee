"""What /api/attention's `attention` arrays hold (`weights`), and the optional `rollout`: the parts of the
answer that go beyond the raw attention weights (headscope/analyses/value_norm.py, headscope/analyses/rollout.py).

weights: "attention"   the pattern, α_ij after softmax: probabilities, every row sums to 1
         "value_norm"  ‖α_ij f(x_j)‖ (Kobayashi et al. 2020): sizes in the hidden states' units; rows do not
                       sum to 1. Costs one more forward pass of the text (with every attention module captured).
rollout: true          per kind whose rows and columns are the same tokens, the (Tq, Tk) attention rollout
                       (Abnar & Zuidema 2020), from the attention weights whichever `weights` says.
Per-head metrics and roles (`heads`, `similarity`) always describe the attention weights.
"""

import torch

from headscope.analyses.rollout import rollout_about, rollouts
from headscope.analyses.value_norm import UNITS, NoValueNorms, check_value_norms, value_norms
from headscope.models.analysis import Analysis, AttentionModel
from headscope.models.interventions import Ablation
from headscope.server.encoding import max_pool
from headscope.server.errors import ApiError

ATTENTION_ABOUT = ("α_ij = softmax_j(q_i · k_j / √D + mask): how much query i reads key j; probabilities, every row "
                   "sums to 1")


def check_weights_request(model: AttentionModel, weights: str) -> None:
    """422 naming why, when the model cannot give what `weights` asks for."""
    if weights == "value_norm":
        try:
            check_value_norms(model)
        except NoValueNorms as e:
            raise ApiError(422, "no_value_norms", f"weights: value_norm is not available for {model.info.name}: {e}") from None


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
    pooled = {kind: max_pool(r[None, None], pool_to) for kind, r in rollouts(analysis.patterns, analysis.layout).items()}
    about = rollout_about(analysis.layout)
    about["pool"] = {kind: block for kind, (_, block) in pooled.items()}
    about["rows_sum_to_one"] = all(block == [1, 1] for block in about["pool"].values())  # max-pooled cells do not
    return {kind: r[0, 0] for kind, (r, _) in pooled.items()}, about
