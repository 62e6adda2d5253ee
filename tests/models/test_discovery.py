"""Everything headscope/models/hf/ finds at load (attention modules, their W_O, blocks, MLP outputs, the final norm)
comes from ONE forward pass of the model: counted from outside, by a global forward pre-hook that sees every
module call, for checkpoints of every text family, the GGUF causal families and the Vision Transformers.
What each discovery finds is checked elsewhere against the families' own module names (tests/models/test_hook_points.py,
tests/analyses/test_value_norm.py); here each must also have found something, so a family that quietly fell back
to eager attention (no trace, nothing found) fails too."""

import pytest
import torch

from tests.checkpoints import FAMILIES, GGUF_FAMILIES, VISION_FAMILIES, build, build_causal, save, save_vision


def forward_passes(load):
    """(what load() returned, how many times its model's top module `net` ran during load())."""
    calls: list[int] = []
    handle = torch.nn.modules.module.register_module_forward_pre_hook(lambda m, args: calls.append(id(m)))
    try:
        model = load()
    finally:
        handle.remove()
    return model, calls.count(id(model.net))


def found_everything(model, decoder: bool) -> None:
    layers = model.info.layers
    assert model.modules is not None and len(model.attention_modules()) >= layers
    assert set(model.output_projections()) == set(model.attention_modules())
    assert model.mlps is not None and len(model.mlps) >= layers
    assert model.hook_points()
    if decoder:
        assert model.final_norm is not None


@pytest.mark.parametrize("family", FAMILIES + tuple(f for f in GGUF_FAMILIES if f not in FAMILIES))
def test_a_checkpoint_is_run_once_at_load(family, tmp_path):
    from headscope.models.hf.model import HFModel

    tokenizer, original = build_causal(family) if family not in FAMILIES else build(family)
    path = save(tmp_path, tokenizer, original)
    model, passes = forward_passes(lambda: HFModel.load(f"tiny-{family}", path))
    assert passes == 1
    found_everything(model, decoder=model.arch == "decoder")


@pytest.mark.parametrize("family", VISION_FAMILIES)
def test_a_vision_checkpoint_is_run_once_at_load(family, tmp_path):
    from headscope.models.hf.vision import HFVisionModel

    path = save_vision(tmp_path, family)
    model, passes = forward_passes(lambda: HFVisionModel.load(f"tiny-{family}", path))
    assert passes == 1
    found_everything(model, decoder=False)
