"""A local ViT checkpoint served end to end (issue 19 item 3): `--model NAME=PATH` on tiny ViT and DINOv2 folders
(tests/checkpoints.py), POST /api/attention with a PNG answers transformers' own output_attentions on the pixels the
folder's image processor makes of that picture (1e-5), the `image` block describes a classifier and a feature model
as each is, ablation and value norms equal independent computations with hooks on transformers, and a text is 422."""

import base64
import io

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from headscope.analyses.rollout import rollout
from headscope.models.images import read_image
from headscope.models.registry import ModelSpec
from headscope.server.app import create_app
from headscope.server.encoding import read_safetensors
from headscope.server.settings import Settings
from tests.checkpoints import CLASSES, save_vision

TOL = 1e-5


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("vision")
    return {"tiny-vit": save_vision(root / "vit", "vit"),
            "tiny-dino": save_vision(root / "dino", "dinov2", classifier=False),
            "tiny-reg": save_vision(root / "reg", "dinov2_with_registers", classifier=False, size=(48, 40))}


@pytest.fixture(scope="module")
def client(folders):
    specs = tuple(ModelSpec(name, str(path)) for name, path in folders.items())
    with TestClient(create_app(Settings(models=specs))) as c:
        yield c


def png() -> bytes:
    rng = np.random.default_rng(7)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def pixel_values(folder, data: bytes) -> torch.Tensor:
    """What the folder's own image processor makes of the picture, read as the server reads an upload."""
    from transformers import AutoImageProcessor

    image = read_image(data, 2048 * 2048)  # (H, W, 3) floats in [0, 1]
    processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    return processor(images=image.numpy(), return_tensors="pt", do_rescale=False)["pixel_values"]  # (1, 3, S, S')


def reference(folder, classifier: bool):
    from transformers import AutoModel, AutoModelForImageClassification

    auto = AutoModelForImageClassification if classifier else AutoModel
    return auto.from_pretrained(folder, attn_implementation="eager", local_files_only=True).eval()


def post(client, **body):
    r = client.post("/api/attention", json={"format": "safetensors", **body})
    assert r.status_code == 200, r.text
    return read_safetensors(r.content)


@pytest.mark.parametrize("name, classifier", [("tiny-vit", True), ("tiny-dino", False)])
def test_a_picture_answers_transformers_own_attention_and_says_what_it_is(client, folders, name, classifier):
    data = png()
    got = post(client, model=name, image=base64.b64encode(data).decode())
    net = reference(folders[name], classifier)
    with torch.no_grad():
        out = net(pixel_values=pixel_values(folders[name], data), output_attentions=True)
    expected = torch.stack(out.attentions, 1)[0].numpy()  # (L, H, T, T)
    np.testing.assert_allclose(got["attention"]["encoder"], expected, atol=TOL, rtol=0)
    image = got["image"]
    assert image["patch_grid"] == [4, 4] and image["class_token"] == 0 and image["patch_size"] == [8, 8]
    assert image["first_patch"] == 1 and image["not_patches"] == [0] and image["pad"] is False
    assert got["tokens"][0] == "[CLS]" and got["tokens"][1:] == [f"r{r}c{c}" for r in range(4) for c in range(4)]
    assert got["layout"]["encoder"]["rows"] == got["layout"]["encoder"]["columns"] == "patches"
    if classifier:
        probs = out.logits[0].softmax(-1)
        assert image["classes"] == [CLASSES[i] for i in range(3)]
        np.testing.assert_allclose(image["probabilities"], probs.numpy(), atol=TOL)
        assert image["prediction"] == CLASSES[int(probs.argmax())] and image["predicts"] is True
    else:
        assert image["classes"] == [] and image["prediction"] is None and image["probabilities"] is None
        assert image["predicts"] is False
    models = {m["name"]: m for m in client.get("/api/models").json()["models"]}
    assert models[name]["takes"] == "image" and models[name]["image"]["pad"] is False  # a photograph: uploads


def test_a_heads_ablation_equals_a_hook_on_transformers(client, folders):
    data, layer, head = png(), 0, 1
    got = post(client, model="tiny-vit", image=base64.b64encode(data).decode(),
               ablate=[{"kind": "encoder", "layer": layer, "head": head}])
    net = reference(folders["tiny-vit"], True)
    D = net.config.hidden_size // net.config.num_attention_heads
    w_o = net.vit.layers[layer].attention.o_proj  # reads the heads concatenated (transformers 5's names)

    def zero_head(module, args):
        z = args[0].clone()
        z[..., head * D:(head + 1) * D] = 0
        return (z,)

    hook = w_o.register_forward_pre_hook(zero_head)
    try:
        with torch.no_grad():
            out = net(pixel_values=pixel_values(folders["tiny-vit"], data), output_attentions=True)
    finally:
        hook.remove()
    np.testing.assert_allclose(got["attention"]["encoder"], torch.stack(out.attentions, 1)[0].numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(got["effect"]["probabilities"], out.logits[0].softmax(-1).numpy(), atol=TOL)


def test_value_norms_and_rollout_are_recomputed_from_transformers(client, folders):
    """Layer 0's value norms by hand, ‖α_ij (x_j W_V^h + b_V^h) W_O^h‖, from the input transformers' value layer reads;
    the rollout from transformers' own attentions."""
    data = png()
    got = post(client, model="tiny-vit", image=base64.b64encode(data).decode(), weights="value_norm", rollout=True)
    net = reference(folders["tiny-vit"], True)
    attention = net.vit.layers[0].attention  # transformers 5's names: q_proj, k_proj, v_proj, o_proj
    seen = {}
    hook = attention.v_proj.register_forward_hook(lambda m, args, out: seen.update(x=args[0]))
    try:
        with torch.no_grad():
            out = net(pixel_values=pixel_values(folders["tiny-vit"], data), output_attentions=True)
    finally:
        hook.remove()
    H = net.config.num_attention_heads
    D = net.config.hidden_size // H
    with torch.no_grad():
        v = attention.v_proj(seen["x"])[0].reshape(-1, H, D).transpose(0, 1)  # (H, T, D)
        w_o = attention.o_proj.weight.reshape(-1, H, D).permute(1, 2, 0)  # (H, D, C)
        moved = (v @ w_o).norm(dim=-1)  # (H, T): ‖(x_j W_V^h + b_V^h) W_O^h‖
        want = out.attentions[0][0] * moved[:, None, :]  # (H, T, T)
    assert got["weights"]["name"] == "value_norm"
    np.testing.assert_allclose(got["attention"]["encoder"][0], want.numpy(), atol=1e-5, rtol=1e-5)
    expected_rollout = rollout(torch.stack(out.attentions, 1)[0])
    np.testing.assert_allclose(got["rollout"]["encoder"], expected_rollout.numpy(), atol=TOL)


def test_a_text_to_an_image_checkpoint_is_a_422_naming_what_it_takes(client):
    r = client.post("/api/attention", json={"model": "tiny-vit", "text": "a cat"})
    assert r.status_code == 422 and r.json()["error"] == "wrong_input" and "image" in r.json()["detail"]


def test_register_tokens_and_a_grid_other_than_the_configs_are_said_and_equal_transformers(client, folders):
    """DINOv2 with 2 registers, its processor making 48 x 40 pictures of a 32 x 32 config (position embeddings
    interpolated): a 6 x 5 grid after [CLS], [REG0], [REG1]; the answer says which positions are no patch."""
    data = png()
    got = post(client, model="tiny-reg", image=base64.b64encode(data).decode())
    net = reference(folders["tiny-reg"], False)
    with torch.no_grad():
        out = net(pixel_values=pixel_values(folders["tiny-reg"], data), output_attentions=True)
    expected = torch.stack(out.attentions, 1)[0].numpy()  # (L, H, 3 + 30, 3 + 30)
    assert expected.shape[-1] == 33
    np.testing.assert_allclose(got["attention"]["encoder"], expected, atol=TOL, rtol=0)
    image = got["image"]
    assert image["patch_grid"] == [6, 5] and image["size"] == [48, 40] and image["first_patch"] == 3
    assert image["not_patches"] == [0, 1, 2] and image["class_token"] == 0 and image["predicts"] is False
    assert got["tokens"][:4] == ["[CLS]", "[REG0]", "[REG1]", "r0c0"] and got["tokens"][-1] == "r5c4"
    models = {m["name"]: m for m in client.get("/api/models").json()["models"]}
    assert models["tiny-reg"]["image"]["not_patches"] == [0, 1, 2]
    assert models["tiny-reg"]["image"]["patch_grid"] == [6, 5] and models["tiny-reg"]["image"]["pad"] is False


def test_a_processor_that_keeps_the_pictures_size_is_refused_per_picture_not_mislabelled(tmp_path):
    """A processor without resize makes a grid of each picture's own size: one of another size than the load's
    probe (32 x 32) is a 422 naming the problem, not a 5xx or a wrong grid."""
    from transformers import ViTImageProcessor

    folder = save_vision(tmp_path / "vit", "vit")
    ViTImageProcessor(do_resize=False).save_pretrained(folder)
    with TestClient(create_app(Settings(models=(ModelSpec("free", str(folder)),)))) as c:
        r = c.post("/api/attention", json={"model": "free", "image": base64.b64encode(png()).decode()})
        assert r.status_code == 422, r.text
        assert r.json()["error"] == "bad_image" and r.json()["field"] == "image"
        assert "aspect ratio" in r.json()["detail"] and "(40, 52)" in r.json()["detail"]
