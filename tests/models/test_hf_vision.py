"""Your own ViT checkpoints (headscope/models/hf/vision.py): tiny random ViT, DeiT, BEiT and DINOv2 folders
(tests/checkpoints.py), classifiers and a feature-only model, saved offline with an image processor; attention equal to transformers' own output_attentions (a fresh eager load of the same folder)
to 1e-5, one head's ablation equal to an independent forward hook on transformers zeroing that head's slice of the
input to the output projection, and clear errors for folders it cannot read."""

import pytest
import torch

from headscope.models.hf.model import CheckpointError
from headscope.models.hf.vision import HFVisionModel
from headscope.models.interventions import Ablation
from headscope.models.registry import load_model
from tests.checkpoints import VISION_FAMILIES, build_vision, save_vision

TOL = 1e-5
FAMILIES = VISION_FAMILIES


@pytest.fixture(scope="module", params=FAMILIES)
def folder(request, tmp_path_factory):
    return save_vision(tmp_path_factory.mktemp(request.param), request.param)


def eager(path):
    from transformers import AutoModelForImageClassification

    return AutoModelForImageClassification.from_pretrained(path, attn_implementation="eager",
                                                           local_files_only=True).eval()


def picture(seed: int = 1) -> torch.Tensor:
    return torch.rand(40, 52, 3, generator=torch.Generator().manual_seed(seed))  # (H, W, 3): any size


def test_patterns_equal_transformers_output_attentions(folder):
    model = load_model(f"mine={folder}")
    assert isinstance(model, HFVisionModel) and model.info.takes == "image"
    image = picture()
    analysis = model.analyze_batch([image])[0]
    pixels = model.pixels_of(model.processor, image)
    with torch.no_grad():
        expected = torch.stack(eager(folder)(pixel_values=pixels, output_attentions=True).attentions, 1)[0]
    assert analysis.patterns["encoder"].shape == expected.shape  # (L, H, T, T)
    torch.testing.assert_close(analysis.patterns["encoder"], expected, atol=TOL, rtol=0)
    grid = analysis.image["patch_grid"]
    assert grid == [4, 4] and len(analysis.tokens) == expected.shape[-1]
    assert analysis.tokens[-grid[0] * grid[1]:] == [f"r{r}c{c}" for r in range(4) for c in range(4)]
    assert analysis.tokens[0] == "[CLS]" and (analysis.tokens[1] == "[DIST]") == ("deit" in str(folder))
    with torch.no_grad():
        probs = eager(folder)(pixel_values=pixels).logits[0].softmax(-1)
    torch.testing.assert_close(torch.tensor(analysis.image["probabilities"]), probs, atol=TOL, rtol=0)
    assert analysis.image["classes"] == ["cat", "dog", "<b>bird</b>"]
    assert analysis.image["seen"].startswith("data:image/png;base64,")


def test_one_head_ablated_equals_a_hook_on_transformers(folder):
    model = load_model(f"mine={folder}")
    image = picture(2)
    layer, head = 0, 2  # the first layer: every later pattern changes too
    analysis = model.analyze_batch([image], ablation=Ablation((("encoder", layer, head),), "zero"))[0]
    net = eager(folder)
    D = net.config.hidden_size // net.config.num_attention_heads
    out_proj = model.output_projections()[("encoder", layer)]
    name = next(n for n, m in model.net.named_modules() if m is out_proj)
    target = dict(net.named_modules())[name]

    def zero_head(module, args):
        x = args[0].clone()  # (B, T, H * D): the heads' outputs, concatenated
        x[..., head * D:(head + 1) * D] = 0
        return (x,)

    handle = target.register_forward_pre_hook(zero_head)
    try:
        with torch.no_grad():
            out = net(pixel_values=model.pixels_of(model.processor, image), output_attentions=True)
    finally:
        handle.remove()
    torch.testing.assert_close(analysis.patterns["encoder"], torch.stack(out.attentions, 1)[0], atol=TOL, rtol=0)
    torch.testing.assert_close(torch.tensor(analysis.effect["probabilities"]), out.logits[0].softmax(-1),
                               atol=TOL, rtol=0)
    assert (analysis.patterns["encoder"][1] - model.analyze_batch([image])[0].patterns["encoder"][1]).abs().max() > 1e-4


def test_a_folder_without_an_image_processor_is_one_clear_error(tmp_path):
    build_vision("vit").save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="no image processor"):
        load_model(f"mine={tmp_path}")


def test_a_text_is_not_a_picture(folder):
    from headscope.models.images import NotAnImage

    model = load_model(f"mine={folder}")
    with pytest.raises(NotAnImage, match="takes an image"):
        model.prepare("a cat")


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    return save_vision(tmp_path_factory.mktemp("dinov2-features"), "dinov2", classifier=False)


def test_a_feature_model_says_it_predicts_nothing_and_its_patterns_equal_transformers(features):
    from transformers import AutoModel

    model = load_model(f"mine={features}")
    image = picture(3)
    analysis = model.analyze_batch([image])[0]
    reference = AutoModel.from_pretrained(features, attn_implementation="eager", local_files_only=True).eval()
    with torch.no_grad():
        expected = torch.stack(reference(pixel_values=model.pixels_of(model.processor, image),
                                         output_attentions=True).attentions, 1)[0]
    torch.testing.assert_close(analysis.patterns["encoder"], expected, atol=TOL, rtol=0)
    assert analysis.image["classes"] == [] and analysis.image["prediction"] is None
    assert analysis.image["probabilities"] is None and analysis.image["patch_grid"] == [4, 4]
    assert analysis.image["predicts"] is False and analysis.image["not_patches"] == [0] and not model.image.pad
