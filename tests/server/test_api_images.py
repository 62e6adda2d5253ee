"""Image models through the HTTP API (issue 19, item 2): POST /api/attention takes `image` for the digits ViT and
answers exactly what a direct DigitsModel run on the same pixels gives; what a model does not take is a 422
wrong_input; every hostile picture (a real Pillow-made file, sent from outside over HTTP to a live server) is a 4xx
naming the problem or the limit, and a decompression bomb is refused without the server's memory growing."""

import base64
import io
import struct
import threading
import time
import tracemalloc
import zlib

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from headscope.analyses.rollout import rollouts
from headscope.models.digits import DigitsModel, load_images
from headscope.models.interventions import Ablation
from headscope.models.registry import ModelSpec
from headscope.server.app import create_app
from headscope.server.encoding import read_safetensors
from headscope.server.settings import Settings
from tests.conftest import LiveServer

SETTINGS = Settings(models=(ModelSpec("digits"), ModelSpec("minilm")))


@pytest.fixture(scope="module")
def digits() -> DigitsModel:
    return DigitsModel.load()


@pytest.fixture(scope="module")
def app(digits, models):
    return create_app(SETTINGS, models={"digits": digits, "minilm": models["minilm"]})


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def server(app):
    with LiveServer(app) as live:
        yield live


def encoded(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kw)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def pixels_of(data: bytes) -> torch.Tensor:
    """The file decoded independently of headscope: Pillow to RGB, numpy to [0, 1]: (H, W, 3)."""
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64) / 255
    return torch.from_numpy(rgb.astype(np.float32))


def digit_png(index: int = 5) -> bytes:
    images, _ = load_images()
    return encoded(Image.fromarray(np.round(images[index].numpy() * 255).astype(np.uint8), "L"))


def paper_jpeg() -> bytes:
    """A '3' as dark ink on white paper, 40 x 32 RGB: the server must invert, pad and shrink it."""
    images, labels = load_images()
    digit = images[int((labels == 3).nonzero()[0, 0])].numpy()
    big = np.repeat(np.repeat(1 - digit, 4, 0), 4, 1)  # (32, 32), dark ink
    paper = np.ones((40, 32, 3))
    paper[4:36] = big[..., None]
    return encoded(Image.fromarray(np.round(paper * 255).astype(np.uint8), "RGB"), "JPEG", quality=95)


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(side: int, rows: int = 100) -> bytes:
    """A grey PNG whose header says side x side pixels: a few KB that would decode to side * side bytes."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * (rows * (side + 1)), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def test_models_lists_digits_with_what_it_takes_and_the_image_limits(client):
    answer = client.get("/api/models").json()
    info = {m["name"]: m for m in answer["models"]}
    assert info["digits"]["takes"] == "image" and info["minilm"]["takes"] == "text"
    assert info["digits"]["image"] == {"size": [8, 8], "channels": 1, "patch_size": [2, 2], "patch_grid": [4, 4],
                                       "class_token": 0, "classes": [str(k) for k in range(10)], "first_patch": 1,
                                       "not_patches": [0], "predicts": True, "pad": True}
    assert info["minilm"]["image"] is None
    assert info["digits"]["kinds"] == {"encoder": {"rows": "patches", "columns": "patches", "causal": False}}
    assert answer["limits"]["max_image_bytes"] == SETTINGS.max_image_bytes
    assert answer["limits"]["max_image_pixels"] == SETTINGS.max_image_pixels


@pytest.mark.parametrize("make", [digit_png, paper_jpeg])
def test_the_answer_equals_a_direct_run_on_the_same_pixels(client, digits, make):
    data = make()
    r = client.post("/api/attention", json={"model": "digits", "image": b64(data), "format": "safetensors"})
    assert r.status_code == 200, r.text
    got = read_safetensors(r.content)
    want = digits.analyze_image(pixels_of(data))
    np.testing.assert_array_equal(got["attention"]["encoder"], want.patterns["encoder"].numpy())  # exact float32
    assert got["tokens"] == want.tokens == ["[CLS]", *(f"r{r}c{c}" for r in range(4) for c in range(4))]
    assert got["dims"] == ["layer", "head", "query_pos", "key_pos"]
    assert got["layout"] == {"encoder": {"rows": "patches", "columns": "patches", "causal": False}}
    image = got["image"]
    assert {k: image[k] for k in ("patch_grid", "patch_size", "class_token", "size")} == {
        "patch_grid": [4, 4], "patch_size": [2, 2], "class_token": 0, "size": [8, 8]}
    np.testing.assert_allclose(image["probabilities"], want.image["probabilities"], atol=1e-7)
    assert image["prediction"] == want.image["prediction"] and image["seen"] == want.image["seen"]
    assert image["inverted"] is (make is paper_jpeg)
    if make is paper_jpeg:
        assert image["prediction"] == "3"  # ink on paper, inverted, padded and shrunk, still read as a 3
    # and the pixels the network read (`seen`) are the fitted picture: running them again gives the same patterns
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(image["seen"].split(",", 1)[1]))), dtype=np.float32)
    again = digits.analyze_image(torch.from_numpy(seen / 255))
    torch.testing.assert_close(again.patterns["encoder"], want.patterns["encoder"], atol=2e-2, rtol=0)


def test_a_data_url_and_the_get_twin_give_the_same_answer(client):
    data = digit_png(9)
    plain = client.post("/api/attention", json={"model": "digits", "image": b64(data)}).json()
    url = client.post("/api/attention", json={"model": "digits", "image": "data:image/png;base64," + b64(data)}).json()
    twin = client.get("/api/attention", params={"model": "digits", "image": b64(data)}).json()
    assert plain == url == twin
    assert len(plain["attention"]["encoder"]) == 3 and len(plain["heads"]["encoder"]) == 12


def test_wrong_input_both_ways_names_what_the_model_takes(client):
    r = client.post("/api/attention", json={"model": "digits", "text": "The cat sat."})
    assert r.status_code == 422 and r.json()["error"] == "wrong_input" and r.json()["takes"] == "image"
    assert "digits takes an image" in r.json()["detail"]
    r = client.post("/api/attention", json={"model": "minilm", "image": b64(digit_png())})
    assert r.status_code == 422 and r.json()["error"] == "wrong_input" and r.json()["takes"] == "text"
    assert "minilm takes a text" in r.json()["detail"]
    r = client.post("/api/attention", json={"model": "digits"})
    assert r.status_code == 422 and r.json()["error"] == "wrong_input"
    r = client.post("/api/attention", json={"model": "minilm"})
    assert r.status_code == 422 and r.json()["error"] == "validation_error" and "text" in r.json()["detail"]
    r = client.post("/api/explain", json={"model": "digits", "text": "a", "kind": "encoder", "layer": 0, "head": 0,
                                          "query": 0})
    assert r.status_code == 422 and r.json()["error"] == "wrong_input"


def apng() -> bytes:
    frames = [Image.new("L", (8, 8), v) for v in (0, 255)]
    return encoded(frames[0], save_all=True, append_images=frames[1:])


def truncated() -> bytes:
    data = encoded(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8), "L"))
    return data[: len(data) // 2]


BAD_IMAGES = {
    "garbage": (lambda: b"The cat sat on the mat." * 10, "bad_image", "not a PNG or JPEG"),
    "gif": (lambda: encoded(Image.new("L", (8, 8)), "GIF"), "bad_image", "not a PNG or JPEG"),
    "truncated": (truncated, "bad_image", "(broken or truncated|not a readable)"),
    "zero by zero": (lambda: bomb_png(0, 0), "bad_image", "(no pixels|not a PNG or JPEG)"),
    "bomb": (lambda: bomb_png(30000), "image_too_large", "900000000 pixels.*max_image_pixels is 4194304"),
    "small bomb": (lambda: bomb_png(5000, 10), "image_too_large", "25000000 pixels; max_image_pixels is 4194304"),
    "animated": (apng, "bad_image", "animated \\(2 frames\\)"),
    "cmyk": (lambda: encoded(Image.new("CMYK", (8, 8)), "JPEG"), "bad_image", "mode CMYK"),
    "16-bit": (lambda: encoded(Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16))), "bad_image", "mode I;16"),
    "too many bytes": (lambda: b"\x89PNG" + bytes(1_100_000), "image_too_large", "max_image_bytes is 1000000"),
}


@pytest.mark.parametrize("name", BAD_IMAGES)
def test_every_bad_image_from_outside_is_a_clear_422(server, name):
    make, code, message = BAD_IMAGES[name]
    data = make()
    r = httpx.post(f"{server.url}/api/attention", json={"model": "digits", "image": b64(data)}, timeout=30)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == code and body["field"] == "image"
    assert __import__("re").search(message, body["detail"]), body["detail"]
    if code == "image_too_large":
        assert body["limit"] in (SETTINGS.max_image_pixels, SETTINGS.max_image_bytes)


def test_not_base64_is_a_clear_422(server):
    r = httpx.post(f"{server.url}/api/attention", json={"model": "digits", "image": "not base64!"}, timeout=30)
    assert r.status_code == 422 and r.json()["error"] == "bad_image" and "base64" in r.json()["detail"]


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096  # resident pages


def peak_growth(send) -> tuple[int, int]:
    """(largest resident-memory growth seen by a 1 ms sampler, tracemalloc's peak) while `send()` runs."""
    start, peak, done = rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss() - start)
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    tracemalloc.start()
    sampler.start()
    try:
        send()
    finally:
        done.set()
        sampler.join()
        _, traced = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak[0], traced


BOUND = 40_000_000  # bytes: a decoded 3000 x 3000 picture alone is 27 MB of pixels, 108 MB as float32 RGB


def test_a_bomb_is_refused_without_the_memory_growing(server, digits, models):
    bomb = bomb_png(3000, 10)  # 9 M pixels said, ~10 KB sent: over max_image_pixels (4 M)

    def send():
        r = httpx.post(f"{server.url}/api/attention", json={"model": "digits", "image": b64(bomb)}, timeout=30)
        assert r.status_code == 422 and r.json()["error"] == "image_too_large"

    grown, traced = peak_growth(send)
    assert grown < BOUND and traced < BOUND, (grown, traced)
    # the measurement sees a decode: the same file under a limit that lets it in grows far beyond the bound
    roomy = create_app(Settings(models=SETTINGS.models, max_image_pixels=10_000_000),
                       models={"digits": digits, "minilm": models["minilm"]})
    with TestClient(roomy) as c:
        def send_roomy():
            assert c.post("/api/attention", json={"model": "digits", "image": b64(bomb)}).status_code == 200

        grown, traced = peak_growth(send_roomy)
    assert max(grown, traced) > BOUND, (grown, traced)


def test_ablation_changes_the_probabilities_as_a_direct_ablated_run(client, digits):
    data = digit_png(11)
    heads = [{"kind": "encoder", "layer": 1, "head": h} for h in range(4)]
    r = client.post("/api/attention", json={"model": "digits", "image": b64(data), "ablate": heads,
                                            "format": "safetensors"})
    assert r.status_code == 200, r.text
    got = read_safetensors(r.content)
    ablation = Ablation(tuple(("encoder", 1, h) for h in range(4)), "zero")
    want = digits.analyze_image(pixels_of(data), ablation=ablation)
    plain = digits.analyze_image(pixels_of(data))
    np.testing.assert_array_equal(got["attention"]["encoder"], want.patterns["encoder"].numpy())
    np.testing.assert_allclose(got["effect"]["probabilities"], want.effect["probabilities"], atol=1e-7)
    np.testing.assert_allclose(got["image"]["probabilities"], plain.image["probabilities"], atol=1e-7)  # un-ablated
    assert got["effect"]["prediction"] == str(int(np.argmax(got["effect"]["probabilities"])))
    assert abs(sum(got["effect"]["probabilities"]) - 1) < 1e-5
    changed = np.abs(np.array(got["effect"]["probabilities"]) - np.array(got["image"]["probabilities"])).max()
    assert changed > 1e-3  # a whole layer's heads knocked out moves the probabilities
    assert got["effect"]["measures"]["probabilities"]["axis"] == "classes"
    r = client.post("/api/attention", json={"model": "digits", "image": b64(data),
                                            "ablate": [{"kind": "encoder", "layer": 5, "head": 0}]})
    assert r.status_code == 422 and r.json()["error"] == "bad_ablation"


def test_value_norms_and_rollout_of_digits_are_recomputed(client, digits):
    """Layer 0's value norms by hand from the net's weights, ‖α_ij (x_j W_V^h + b_V^h) W_O^h‖, and the rollout."""
    data = digit_png(2)
    r = client.post("/api/attention", json={"model": "digits", "image": b64(data), "weights": "value_norm",
                                            "rollout": True, "format": "safetensors"})
    assert r.status_code == 200, r.text
    got = read_safetensors(r.content)
    assert got["weights"]["name"] == "value_norm"
    net, pixels = digits.net, digits.fit(pixels_of(data))[0]
    with torch.no_grad():
        x = torch.cat([net.cls_token, net.patch_emb(pixels.reshape(4, 2, 4, 2).permute(0, 2, 1, 3).reshape(1, 16, 4))],
                      1) + net.pos_emb  # (1, 17, C)
        block = net.blocks[0]
        h = block.ln_1(x)[0]  # (17, C)
        C, H = net.config.width, net.config.heads
        D = C // H
        q, k, v = block.attn.qkv(h).split(C, -1)  # 3 x (17, C)
        for head in range(H):
            s = slice(head * D, (head + 1) * D)
            alpha = torch.softmax(q[:, s] @ k[:, s].T / D ** 0.5, -1)  # (17, 17)
            f = v[:, s] @ block.attn.out_proj.weight[:, s].T  # (17, C): f(x_j)
            want = (alpha[:, :, None] * f[None]).norm(dim=-1)  # (17, 17)
            np.testing.assert_allclose(got["attention"]["encoder"][0, head], want.numpy(), atol=1e-5)
    plain = digits.analyze_image(pixels)
    np.testing.assert_allclose(got["rollout"]["encoder"], rollouts(plain.patterns, plain.layout)["encoder"].numpy(),
                               atol=1e-6)


def test_the_mechanism_of_a_digits_head_is_its_pattern_row(client, digits):
    data = digit_png(4)
    r = client.post("/api/explain", json={"model": "digits", "image": b64(data), "kind": "encoder", "layer": 2,
                                          "head": 1, "query": 0})
    assert r.status_code == 200, r.text
    steps = r.json()
    assert steps["query_tokens"][0] == "[CLS]" and steps["layout"]["rows"] == "patches"
    want = digits.analyze_image(pixels_of(data)).patterns["encoder"][2, 1, 0]  # (17,): the class token's row
    np.testing.assert_allclose(steps["weights"], want.numpy(), atol=1e-6)


def test_heads_of_an_image_answer_are_the_attention_answers(client):
    data = b64(digit_png(6))
    full = client.post("/api/attention", json={"model": "digits", "image": data}).json()
    heads = client.post("/api/heads", json={"model": "digits", "image": data}).json()
    assert heads["heads"] == full["heads"] and heads["tokens"] == full["tokens"]


@pytest.mark.parametrize("path, body", [
    ("/api/corpus", {"texts": ["The cat sat."]}),
    ("/api/probe", {"pairs": '{"sentence": "The cat sat.", "from": "cat", "to": "sat"}'}),
    ("/api/patch", {"clean": "a b", "corrupted": "a c"}),
    ("/api/attribute", {"text": "a b", "answer": "b", "wrong": "c"}),
    ("/api/detect", {}),
    ("/api/importance", {}),
])
def test_features_that_read_texts_say_why_not_for_an_image_model(client, path, body):
    r = client.post(path, json={"model": "digits", **body})
    assert r.status_code == 422 and r.json()["error"] == "not_for_images", r.text
    assert "digits, which takes an image" in r.json()["detail"]
