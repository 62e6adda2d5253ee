"""headscope/models/digits.py, nets/vit.py and training/digits.py: the Vision Transformer trained here on 8 x 8
digits, checked against torch.nn.MultiheadAttention, a numpy patching, and its held-out accuracy recomputed."""

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from headscope.analyses.heads import summarize_heads
from headscope.analyses.rollout import rollouts
from headscope.models.analysis import PATCH_SELF
from headscope.models.digits import (
    CLASS_TOKEN,
    DEFAULT_WEIGHTS,
    SPLIT_SEED,
    DigitsModel,
    NotAnImage,
    class_token_reads,
    held_out,
    load_images,
)
from headscope.models.interventions import Ablation
from headscope.models.nets.vit import ViT, ViTConfig, patchify
from headscope.models.registry import BUILTINS, DEFAULT_SPECS, IMAGE_BUILTINS, load_model, present_builtins
from headscope.training.digits import evaluate, shifted, train


@pytest.fixture(scope="module")
def model() -> DigitsModel:
    return DigitsModel.load()


@pytest.fixture(scope="module")
def data():
    return held_out(*load_images())


def reference_forward(net: ViT, images: torch.Tensor):
    """The same network written again with torch.nn.MultiheadAttention and numpy patching: logits, patterns."""
    c = net.config
    P, G = c.patch_size, c.grid
    arr = images.numpy()
    patches = np.stack([arr[:, r * P:(r + 1) * P, col * P:(col + 1) * P].reshape(len(arr), P * P)
                        for r in range(G) for col in range(G)], axis=1)  # (B, N, P*P), row by row
    x = net.patch_emb(torch.from_numpy(patches))
    x = torch.cat([net.cls_token.expand(len(arr), -1, -1), x], 1) + net.pos_emb  # (B, T, C)
    patterns = []
    for block in net.blocks:
        mha = nn.MultiheadAttention(c.width, c.heads, batch_first=True)
        mha.in_proj_weight.data.copy_(block.attn.qkv.weight)
        mha.in_proj_bias.data.copy_(block.attn.qkv.bias)
        mha.out_proj.weight.data.copy_(block.attn.out_proj.weight)
        mha.out_proj.bias.data.copy_(block.attn.out_proj.bias)
        h = block.ln_1(x)
        a, w = mha(h, h, h, need_weights=True, average_attn_weights=False)  # (B, T, C), (B, H, T, T)
        x = x + a
        x = x + block.mlp.proj(nn.functional.gelu(block.mlp.fc(block.ln_2(x))))
        patterns.append(w)
    return net.head(net.ln_f(x[:, 0])), torch.stack(patterns)  # (B, K), (L, B, H, T, T)


def test_patches_are_read_row_by_row_like_numpy():
    images = torch.arange(2 * 64, dtype=torch.float32).reshape(2, 8, 8)
    got = patchify(images, 2)  # (2, 16, 4)
    a = images.numpy()
    want = np.stack([a[:, 2 * r:2 * r + 2, 2 * c:2 * c + 2].reshape(2, 4) for r in range(4) for c in range(4)], 1)
    np.testing.assert_array_equal(got.numpy(), want)


@torch.no_grad()
def test_the_trained_net_equals_torch_multihead_attention(model, data):
    images = data[1][0][:32]  # (32, 8, 8) held-out images
    logits, patterns = model.net(images)
    ref_logits, ref_patterns = reference_forward(model.net, images)
    torch.testing.assert_close(patterns, ref_patterns, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=0)


@torch.no_grad()
def test_a_random_net_equals_torch_multihead_attention():
    torch.manual_seed(1)
    net = ViT(ViTConfig(image_size=6, patch_size=3, layers=2, heads=2, width=8, mlp_width=16, dropout=0.0)).eval()
    for p in net.parameters():
        p.data.normal_()  # not the small init: attention far from uniform
    images = torch.rand(5, 6, 6)
    logits, patterns = net(images)
    ref_logits, ref_patterns = reference_forward(net, images)
    assert patterns.shape == (2, 5, 2, 5, 5)
    assert patterns.max() > 0.5  # peaked patterns, so the comparison means something
    torch.testing.assert_close(patterns, ref_patterns, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=1e-5)


def test_the_split_is_seeded_disjoint_and_fixed():
    images, labels = load_images()
    assert images.shape == (1797, 8, 8) and 0 <= images.min() and images.max() == 1
    (train_x, _), (test_x, _) = held_out(images, labels)
    again = held_out(images, labels, seed=SPLIT_SEED)
    assert torch.equal(again[1][0], test_x)
    assert len(train_x) + len(test_x) == 1797 and len(test_x) == 359
    flat = {tuple(x.flatten().tolist()) for x in train_x}
    assert not held_out(images, labels, seed=SPLIT_SEED + 1)[1][0].equal(test_x)  # another seed, another split
    # indices are disjoint: no held-out image is a train image by position
    order = torch.randperm(1797, generator=torch.Generator().manual_seed(SPLIT_SEED))
    assert set(order[:359].tolist()).isdisjoint(order[359:].tolist())
    assert len(flat) > 1000


def test_held_out_accuracy_is_recomputed_and_matches_the_recipe(model, data):
    (_, _), (test_x, test_y) = data
    with torch.no_grad():
        predicted = model.net(test_x)[0].argmax(-1)
    accuracy = (predicted == test_y).double().mean().item()
    assert accuracy >= 0.97
    recipe = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert recipe["held_out"]["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (test_y.numpy(), predicted.numpy()), 1)
    assert recipe["held_out"]["confusion"] == confusion.tolist()
    assert confusion.sum() == len(test_y) == recipe["held_out_images"]
    assert evaluate(model.net, test_x, test_y)["confusion"] == confusion.tolist()


def test_the_analysis_says_its_patches(model, data):
    image, label = data[1][0][0], int(data[1][1][0])
    a = model.analyze_image(image)
    assert a.layout == {"encoder": PATCH_SELF} and PATCH_SELF.rows == PATCH_SELF.columns == "patches"
    assert a.tokens[0] == CLASS_TOKEN and a.tokens[1:5] == ["r0c0", "r0c1", "r0c2", "r0c3"] and len(a.tokens) == 17
    assert a.axis("patches") == a.tokens and a.special == [True] + [False] * 16
    p = a.patterns["encoder"]
    assert p.shape == (3, 4, 17, 17)
    torch.testing.assert_close(p.sum(-1), torch.ones(3, 4, 17), atol=1e-5, rtol=0)
    with torch.no_grad():
        logits, patterns = reference_forward(model.net, image[None])
    torch.testing.assert_close(p, patterns[:, 0], atol=1e-5, rtol=0)
    img = a.image
    assert img["patch_grid"] == [4, 4] and img["patch_size"] == [2, 2] and img["class_token"] == 0
    probs = torch.softmax(logits[0], -1)
    torch.testing.assert_close(torch.tensor(img["probabilities"]), probs, atol=1e-6, rtol=0)
    assert img["prediction"] == str(int(probs.argmax())) == str(label)  # the first held-out image is read right
    assert img["classes"] == [str(k) for k in range(10)]


def test_an_image_model_refuses_text_and_wrong_shapes(model):
    with pytest.raises(NotAnImage, match="takes an image"):
        model.analyze("The cat sat.")
    for shape in [(8, 8, 4), (8,), (0, 5), (2, 8, 8, 3)]:
        with pytest.raises(NotAnImage, match="8 x 8"):
            model.analyze_image(torch.zeros(shape))


def test_any_picture_is_fitted_as_the_digits_are(model, data):
    """Grey by BT.601 luma, inverted when mostly bright, padded to a square with dark, area-averaged to 8 x 8:
    checked against numpy block means and against the analysis of the fitted pixels themselves."""
    image = data[1][0][7]  # (8, 8), ink bright on dark
    plain = model.analyze_image(image)
    assert plain.image["inverted"] is False
    # the same digit as dark ink on white paper, 4 times larger, in RGB, with 8 white columns on each side
    big = np.repeat(np.repeat(1 - image.numpy(), 4, 0), 4, 1)  # (32, 32)
    paper = np.ones((32, 48, 3), dtype=np.float32)
    paper[:, 8:40] = big[..., None]
    fitted, inverted = model.fit(torch.from_numpy(paper))
    assert inverted
    grey = 1 - (paper @ np.array([0.299, 0.587, 0.114], dtype=np.float32))  # (32, 48), ink bright
    square = np.zeros((48, 48), dtype=np.float32)
    square[8:40] = grey  # centred, dark padding above and below
    want = square.reshape(8, 6, 8, 6).mean((1, 3))  # (8, 8) block means
    np.testing.assert_allclose(fitted.numpy(), want, atol=1e-5)
    a = model.analyze_image(torch.from_numpy(paper))
    torch.testing.assert_close(a.patterns["encoder"], model.analyze_image(fitted).patterns["encoder"])
    assert a.image["inverted"] is True and a.image["size"] == [8, 8]
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(a.image["seen"].split(",", 1)[1]))))
    np.testing.assert_array_equal(seen, np.round(fitted.numpy() * 255).astype(np.uint8))


def test_ablation_knocks_out_a_head_and_says_what_changed(model, data):
    image = data[1][0][3]
    plain = model.analyze_image(image)
    ablation = Ablation(heads=(("encoder", 0, 0),), mode="zero")
    a = model.analyze_image(image, ablation=ablation)
    torch.testing.assert_close(a.patterns["encoder"][0], plain.patterns["encoder"][0])  # layer 0's own pattern stays
    assert not torch.allclose(a.patterns["encoder"][1], plain.patterns["encoder"][1])  # layer 1 reads another input
    assert a.image == plain.image  # the answer's prediction is the un-ablated one
    assert -1 <= a.effect["embedding_cosine"] < 1 and len(a.effect["probabilities"]) == 10
    # the ablated probabilities recomputed by zeroing head 0's z in layer 0 by hand
    net = model.net
    with torch.no_grad():
        x = net.patch_emb(patchify(image[None], 2))
        x = torch.cat([net.cls_token, x], 1) + net.pos_emb
        for i, block in enumerate(net.blocks):
            h = block.ln_1(x)
            q, k, v = block.attn.project(h, None)
            z = torch.softmax(q @ k.transpose(-2, -1) / (block.attn.head_width ** 0.5), -1) @ v  # (1, H, T, D)
            if i == 0:
                z[:, 0] = 0
            x = x + block.attn.out_proj(z.transpose(1, 2).reshape(1, 17, -1))
            x = x + block.mlp(block.ln_2(x))
        probs = torch.softmax(net.head(net.ln_f(x[:, 0])), -1)[0]
    torch.testing.assert_close(torch.tensor(a.effect["probabilities"]), probs, atol=1e-5, rtol=0)


def test_text_analyses_run_on_patches(model, data):
    a = model.analyze_image(data[1][0][1])
    heads = summarize_heads(a)["encoder"]
    assert len(heads) == 3 * 4  # a record for every head
    r = rollouts(a.patterns, a.layout)["encoder"]  # (17, 17): how the class token gathers from the patches
    p = a.patterns["encoder"].double().numpy()  # (L, H, T, T)
    want = np.eye(17)
    for layer in range(3):  # Abnar & Zuidema 2020, in numpy: (mean over heads + I) / 2, renormalised, multiplied
        m = 0.5 * p[layer].mean(0) + 0.5 * np.eye(17)
        want = (m / m.sum(-1, keepdims=True)) @ want
    np.testing.assert_allclose(r.numpy(), want, atol=1e-6)


def test_digits_is_a_builtin_the_server_serves_by_default_after_the_text_models():
    assert "digits" in BUILTINS and "digits" in IMAGE_BUILTINS
    for specs in (DEFAULT_SPECS, present_builtins()):
        names = [s.name for s in specs]
        assert "digits" in names and names[0] not in IMAGE_BUILTINS  # the default model takes a text
    model = load_model("digits")
    assert model.info.takes == "image" and model.image.pad is True  # the page draws it on its pad


def test_shift_augmentation_moves_pixels():
    image = torch.zeros(1, 8, 8)
    image[0, 3, 4] = 1
    moved = shifted(image.repeat(64, 1, 1), torch.Generator().manual_seed(0))  # (64, 8, 8)
    where = {tuple(torch.nonzero(m)[0].tolist()) for m in moved}
    assert where == {(3 + dy, 4 + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}


def test_training_is_seeded_and_reproducible():
    a, ra = train(epochs=1, seed=3, log_every=0)
    b, rb = train(epochs=1, seed=3, log_every=0)
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), name
    assert ra["held_out"] == rb["held_out"]


def test_what_the_class_token_reads_is_recomputed_in_numpy(model, data):
    images = data[1][0]  # the held-out images
    got = class_token_reads(model.net, images)
    with torch.no_grad():
        _, patterns = reference_forward(model.net, images)
    p = patterns.numpy()[:, :, :, 0, :]  # (L, B, H, T)
    a = images.numpy()
    inked = np.stack([(a[:, 2 * r:2 * r + 2, 2 * c:2 * c + 2] > 0).any((1, 2)) for r in range(4) for c in range(4)], 1)
    np.testing.assert_allclose(got["self"], p[..., 0].mean(1), atol=1e-5)
    np.testing.assert_allclose(got["ink"], (p[..., 1:] * inked[None, :, None, :]).sum(-1).mean(1), atol=1e-5)
    assert got["ink_share"] == pytest.approx(inked.mean())
