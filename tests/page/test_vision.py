"""The page with real ViT checkpoints in headless Chromium (Debian's /usr/bin/chromium driven by Playwright): tiny
transformers folders (tests/checkpoints.py) served by `--model NAME=PATH` specs beside the built-in digits. A ViT
checkpoint gets the upload only (the pad is for models whose /api/models `image.pad` says they are drawn on one);
an uploaded picture is analyzed, the grid paints, and every head's class-token overlay, at the model's own patch
grid, draws the class token's row of POST /api/attention's answer for the very bytes the page sent (to the 8-bit
grid's step). A DINOv2 with registers at a 12 x 11 grid (135 positions) is max-pooled for the grid: its overlays
still draw the full-resolution class-token rows, fetched apart, and skip the register tokens."""

import base64
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from playwright.sync_api import expect

from headscope.models.registry import ModelSpec
from headscope.server.app import create_app
from headscope.server.settings import Settings
from tests.checkpoints import save_vision
from tests.conftest import LiveServer, watched_page

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def vision_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("vision-page")
    specs = (ModelSpec("tiny-vit", str(save_vision(root / "vit", "vit"))),
             ModelSpec("tiny-reg", str(save_vision(root / "reg", "dinov2_with_registers", classifier=False,
                                                   size=(96, 88)))),
             ModelSpec("digits"))
    app = create_app(Settings(models=specs))
    with LiveServer(app) as server, TestClient(app) as client:
        server.client = client
        yield server


@pytest.fixture
def vpage(browser, vision_server):
    with watched_page(browser, vision_server) as page:
        page.sent = []  # the JSON bodies of the page's POST /api/attention requests
        page.on("request", lambda r: page.sent.append(json.loads(r.post_data))
                if r.url.endswith("/api/attention") and r.method == "POST" else None)
        yield page


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    rng = np.random.default_rng(3)
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(path)
    return path


def wait_ready(page):
    page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=60_000)


def wait_overlays(page):
    page.wait_for_function("() => [...document.querySelectorAll('section.overlay-grid')].every("
                           "s => s.dataset.state === 'ready')", timeout=30_000)


def api(server, model, data: bytes):
    r = server.client.post("/api/attention", json={"model": model, "image": base64.b64encode(data).decode()})
    assert r.status_code == 200, r.text
    return r.json()


def class_rows(answer):
    """(L, H, patches): every head's class-token row on the patches (no class, register token), by `dims`; and
    (L, H): the 8-bit grid's step of each head (its matrix's maximum / 255: the compact answer's scale)."""
    a = np.asarray(answer["attention"]["encoder"])
    a = a.transpose([answer["dims"].index(d) for d in ("layer", "head", "query_pos", "key_pos")])
    image = answer["image"]
    patches = [p for p in range(image["first_patch"], a.shape[-1]) if p not in image["not_patches"]]
    return a[:, :, image["class_token"], patches], a.max((-2, -1)) / 255


def drawn(page, layer, head) -> np.ndarray:
    canvas = page.locator(f'canvas.overlay[data-kind="encoder"][data-layer="{layer}"][data-head="{head}"]')
    return np.asarray(json.loads(canvas.get_attribute("data-values")))


def upload_and_analyze(page, model, path):
    page.goto(f"{page.base_url}/?model={model}")
    expect(page.locator("#image-input")).to_be_visible()
    page.set_input_files("#upload", str(path))
    expect(page.locator("#upload-preview")).to_be_visible()
    page.click("#analyze")
    wait_ready(page)
    wait_overlays(page)


def test_a_vit_checkpoint_gets_the_upload_only_and_the_pad_is_for_models_drawn_on_one(vpage, vision_server):
    page = vpage
    listed = {m["name"]: m["image"] for m in vision_server.client.get("/api/models").json()["models"]}
    assert listed["tiny-vit"]["pad"] is False and listed["digits"]["pad"] is True
    page.goto(f"{page.base_url}/?model=tiny-vit")
    expect(page.locator("#upload")).to_be_visible()
    for hidden in ("#pad", "#pad-undo", "#pad-clear"):
        expect(page.locator(hidden)).to_be_hidden()
    expect(page.locator("#pad-what")).to_contain_text("Upload a picture")
    page.select_option("#model", "digits")  # the pad comes back for the model drawn on one
    expect(page.locator("#pad")).to_be_visible()
    expect(page.locator("#pad-undo")).to_be_visible()
    page.select_option("#model", "tiny-vit")
    expect(page.locator("#pad")).to_be_hidden()


def test_an_uploaded_picture_paints_every_heads_class_token_row_of_the_api(vpage, vision_server, photo):
    page = vpage
    upload_and_analyze(page, "tiny-vit", photo)
    assert base64.b64decode(page.sent[-1]["image"]) == photo.read_bytes()
    answer = api(vision_server, "tiny-vit", photo.read_bytes())
    expect(page.locator("#prediction-text")).to_have_attribute("data-class", answer["image"]["prediction"])
    rows, step = class_rows(answer)  # (L, H, 16), (L, H)
    L, H, n = rows.shape
    rows_, cols = answer["image"]["patch_grid"]
    assert n == rows_ * cols == 16
    assert (rows.max(-1) > 20 * step).sum() >= L * H - 1  # the rows are far above 0 in all heads but one
    expect(page.locator('canvas.head[data-kind="encoder"]')).to_have_count(L * H)  # the grid of matrices
    expect(page.locator('canvas.overlay[data-kind="encoder"]')).to_have_count(L * H)
    assert page.get_attribute('section.overlay-grid[data-kind="encoder"]', "data-pool") == "1x1"
    for layer in range(L):
        for head in range(H):
            got = drawn(page, layer, head)
            assert got.shape == (n,)
            np.testing.assert_allclose(got, rows[layer, head], atol=step[layer, head], rtol=0)


def test_a_pooled_grid_still_overlays_the_full_resolution_rows_and_skips_the_registers(vpage, vision_server, photo):
    page = vpage
    upload_and_analyze(page, "tiny-reg", photo)
    asked = [b for b in page.sent if b.get("model") == "tiny-reg"]
    assert any(b.get("pool_to") for b in asked) and any("pool_to" not in b for b in asked)  # pooled grid, full rows
    answer = api(vision_server, "tiny-reg", photo.read_bytes())
    assert answer["image"]["patch_grid"] == [12, 11] and answer["image"]["not_patches"] == [0, 1, 2]
    rows, step = class_rows(answer)  # (L, H, 132), (L, H)
    assert page.get_attribute('section.overlay-grid[data-kind="encoder"]', "data-pool") == "1x1"
    for layer, head in [(0, 0), (1, 3), (0, 2)]:
        got = drawn(page, layer, head)
        assert got.shape == (132,) and rows[layer, head].max() > 20 * step[layer, head]
        np.testing.assert_allclose(got, rows[layer, head], atol=step[layer, head], rtol=0)
    expect(page.locator("#prediction-text")).to_contain_text("feature model")
