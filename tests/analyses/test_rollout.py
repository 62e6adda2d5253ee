"""headscope/analyses/rollout.py: a rollout that collapses onto one key says so."""

import pytest


def test_a_rollout_that_collapses_onto_one_key_says_so(smollm2, minilm):
    """SmolLM2 (no BOS, 30 layers): its rollout is (nearly) all on the first token; MiniLM's is not."""
    from headscope.analyses.rollout import COLLAPSED, collapse, rollout

    deep = rollout(smollm2.analyze("The cat sat on the mat because it was warm.").patterns["decoder"])
    said = collapse(deep)
    assert said is not None and said["key"] == 0
    assert said["mean_weight"] == pytest.approx(deep[:, 0].double().mean().item()) and said["mean_weight"] >= COLLAPSED
    assert collapse(rollout(minilm.analyze("The cat sat on the mat because it was warm.").patterns["encoder"])) is None
