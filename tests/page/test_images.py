"""The page for an image model in real headless Chromium (Debian's /usr/bin/chromium driven by Playwright): the digit
pad drawn on with mouse events, undo and clear, Analyze, the L x H grid of patch matrices and of class-token overlays
whose drawn weights equal the API's (to the 8-bit grid's step), hovering a patch, the rollout over the picture, the
drawing in the URL, an upload, and a text model on the same page, unchanged; a phone's width does not scroll sideways.

The server serves the built-in `digits` ViT and `minilm`; the numbers the page draws are checked against POST
/api/attention's exact JSON answer for the very image bytes the page sent (captured from its request)."""

import base64
import io
import json
from urllib.parse import parse_qs, urlencode, urlparse

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from playwright.sync_api import expect

from headscope.models.registry import ModelSpec, load_model
from headscope.server.app import create_app
from headscope.server.settings import Settings
from tests.conftest import LiveServer, watched_page

pytestmark = pytest.mark.browser

LEVELS = 15  # the pad's grey levels: one hex digit per pixel (static/js/lib/digitpad.js)


@pytest.fixture(scope="module")
def image_server(models):
    """A live server with the digits ViT first and minilm (the session's, already loaded) second."""
    served = {"digits": load_model(ModelSpec("digits")), "minilm": models["minilm"]}
    app = create_app(Settings(models=(ModelSpec("digits"), ModelSpec("minilm"))), models=served)
    with LiveServer(app) as server, TestClient(app) as client:
        server.client = client
        server.models = served
        yield server


@pytest.fixture
def ipage(browser, image_server):
    with watched_page(browser, image_server) as page:
        page.sent = []  # the JSON bodies of the page's POST /api/attention requests
        page.on("request", lambda r: page.sent.append(json.loads(r.post_data))
                if r.url.endswith("/api/attention") and r.method == "POST" else None)
        yield page


def wait_ready(page):
    page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=60_000)


def wait_overlays(page):
    page.wait_for_function("() => [...document.querySelectorAll('section.overlay-grid')].every("
                           "s => s.dataset.state === 'ready')", timeout=30_000)


def pad_pixels(page) -> str:
    return page.get_attribute("#pad", "data-pixels")


def stroke(page, points):
    """Draw one stroke on the pad through `points`, given as fractions (x, y) of its box: mouse down, moves, up."""
    box = page.locator("#pad").bounding_box()
    at = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in points]
    page.mouse.move(*at[0])
    page.mouse.down()
    for p in at[1:]:
        page.mouse.move(*p, steps=6)
    page.mouse.up()


def draw_seven(page):
    stroke(page, [(0.2, 0.15), (0.8, 0.15)])
    stroke(page, [(0.8, 0.15), (0.45, 0.9)])


def levels(hexes: str, size) -> np.ndarray:
    return np.array([int(c, 16) for c in hexes], dtype=np.uint8).reshape(size)


def api(server, image_b64: str, **fields):
    r = server.client.post("/api/attention", json={"model": "digits", "image": image_b64, **fields})
    assert r.status_code == 200, r.text
    return r.json()


def head_matrix(answer, kind, layer, head) -> np.ndarray:
    """One head's (query, key) matrix from a JSON answer, read by its `dims`."""
    a = np.asarray(answer["attention"][kind])  # axes named by answer["dims"]
    order = [answer["dims"].index(d) for d in ("layer", "head", "query_pos", "key_pos")]
    return a.transpose(order)[layer, head]


def patch_row(answer, matrix, query) -> np.ndarray:
    """The query's row without the class token's column: the weights on each patch, row by row."""
    cls = answer["image"]["class_token"]
    return np.delete(matrix[query], cls)


def overlay(page, layer, head, kind="encoder"):
    canvas = page.locator(f'canvas.overlay[data-kind="{kind}"][data-layer="{layer}"][data-head="{head}"]')
    return {"query": int(canvas.get_attribute("data-query")), "values": np.asarray(json.loads(canvas.get_attribute("data-values"))),
            "cls": float(canvas.get_attribute("data-cls"))}


def test_a_drawing_is_analyzed_and_every_overlay_draws_the_class_tokens_row_of_the_api(ipage, image_server):
    page = ipage
    page.goto(f"{page.base_url}/?model=digits")
    expect(page.locator("#pad")).to_be_visible()
    expect(page.locator("#text")).to_be_hidden()
    info = image_server.client.get("/api/models").json()
    digits = next(m for m in info["models"] if m["name"] == "digits")
    size = digits["image"]["size"]
    assert page.evaluate("() => [document.getElementById('pad').width, document.getElementById('pad').height]") == size[::-1]
    draw_seven(page)
    drawn = pad_pixels(page)
    assert len(drawn) == size[0] * size[1] and set(drawn) != {"0"}
    page.click("#analyze")
    wait_ready(page)
    wait_overlays(page)

    # the page sent the drawing as a PNG of exactly the pad's pixels
    sent = page.sent[-1]
    assert "text" not in sent and sent["model"] == "digits"
    png = Image.open(io.BytesIO(base64.b64decode(sent["image"])))
    assert png.format == "PNG" and png.size == (size[1], size[0])
    grey = np.asarray(png.convert("L"), dtype=np.int64)
    np.testing.assert_array_equal(grey, levels(drawn, size).astype(np.int64) * 255 // LEVELS)

    answer = api(image_server, sent["image"])
    L, H = digits["layers"], digits["heads"]
    expect(page.locator('canvas.head[data-kind="encoder"]')).to_have_count(L * H)
    expect(page.locator('canvas.overlay[data-kind="encoder"]')).to_have_count(L * H)
    cls = answer["image"]["class_token"]
    rows, cols = answer["image"]["patch_grid"]
    for layer in range(L):
        for head in range(H):
            m = head_matrix(answer, "encoder", layer, head)
            drawn_row = overlay(page, layer, head)
            assert drawn_row["query"] == cls
            assert drawn_row["values"].shape == (rows * cols,)
            step = m.max() / 255  # the grid's answer is 8-bit per head, scaled to the head's maximum
            np.testing.assert_allclose(drawn_row["values"], patch_row(answer, m, cls), atol=step, rtol=0)
            assert drawn_row["cls"] == pytest.approx(m[cls, cls], abs=step)
    # prediction and probabilities as the API gives them
    expect(page.locator("#prediction-text")).to_have_attribute("data-class", answer["image"]["prediction"])
    probs = page.locator("#probabilities .prob").evaluate_all("s => s.map(x => [x.dataset.class, +x.dataset.prob])")
    by_class = dict(zip(answer["image"]["classes"], answer["image"]["probabilities"]))
    assert len(probs) == min(10, len(by_class))
    for name, p in probs:
        assert p == pytest.approx(by_class[name], abs=1e-6)
    assert [p for _, p in probs] == sorted((p for _, p in probs), reverse=True)
    assert page.locator("#status").text_content().startswith(f"digits: {len(answer['tokens'])} positions")


def test_hovering_a_patch_shows_that_patchs_row_in_every_overlay(ipage, image_server):
    page = ipage
    page.goto(f"{page.base_url}/?model=digits")
    draw_seven(page)
    page.click("#analyze")
    wait_ready(page)
    wait_overlays(page)
    answer = api(image_server, page.sent[-1]["image"])
    rows, cols = answer["image"]["patch_grid"]
    patches = [i for i, _ in enumerate(answer["tokens"]) if i != answer["image"]["class_token"]]
    r, c = rows - 1, 1  # a patch of the bottom row
    canvas = page.locator('canvas.overlay[data-layer="1"][data-head="2"]')
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + (c + 0.5) / cols * box["width"], box["y"] + (r + 0.5) / rows * box["height"])
    query = patches[r * cols + c]
    assert answer["tokens"][query] == f"r{r}c{c}"  # the answer's own name of that patch
    for layer, head in [(1, 2), (0, 0)]:  # the hovered head, and another one: every overlay follows
        drawn_row = overlay(page, layer, head)
        assert drawn_row["query"] == query
        m = head_matrix(answer, "encoder", layer, head)
        np.testing.assert_allclose(drawn_row["values"], patch_row(answer, m, query), atol=m.max() / 255, rtol=0)
    expect(page.locator(".overlay-status")).to_contain_text(f"r{r}c{c}")
    page.mouse.move(5, 5)  # off the overlays: the class token's row again
    assert overlay(page, 1, 2)["query"] == answer["image"]["class_token"]


def test_undo_and_clear(ipage):
    page = ipage
    page.goto(f"{page.base_url}/?model=digits")
    expect(page.locator("#pad")).to_be_visible()
    empty = pad_pixels(page)
    assert set(empty) == {"0"}
    stroke(page, [(0.2, 0.2), (0.8, 0.2)])
    one = pad_pixels(page)
    stroke(page, [(0.5, 0.2), (0.5, 0.9)])
    two = pad_pixels(page)
    assert len({empty, one, two}) == 3
    page.click("#pad-undo")
    assert pad_pixels(page) == one
    page.click("#pad-clear")
    assert pad_pixels(page) == empty
    page.click("#pad-undo")  # clearing can be undone too
    assert pad_pixels(page) == one
    page.click("#pad-clear")
    page.click("#analyze")  # an empty pad is refused in words, without a request
    expect(page.locator("#status")).to_contain_text("Draw a digit")
    assert page.sent == []


def test_a_link_keeps_the_drawing_redraws_it_and_gets_the_same_prediction(ipage, browser, image_server):
    page = ipage
    page.goto(f"{page.base_url}/?model=digits")
    draw_seven(page)
    page.click("#analyze")
    wait_ready(page)
    drawn = pad_pixels(page)
    assert parse_qs(urlparse(page.url).query)["draw"] == [drawn]
    prediction = page.locator("#prediction-text").text_content()
    with watched_page(browser, image_server) as again:
        again.goto(page.url)
        wait_ready(again)
        assert pad_pixels(again) == drawn
        assert again.locator("#prediction-text").text_content() == prediction
        wait_overlays(again)
        assert overlay(again, 0, 1)["values"].tolist() == overlay(page, 0, 1)["values"].tolist()


def test_an_uploaded_png_is_sent_as_it_is_and_the_link_says_it_cannot_keep_it(ipage, image_server, tmp_path):
    from sklearn.datasets import load_digits

    page = ipage
    digit = load_digits().images[3]  # a "3": dark ink on white, 32 x 32 in RGB, as a photo of paper would be
    pixels = (255 - np.kron(digit / 16 * 255, np.ones((4, 4)))).astype(np.uint8)
    path = tmp_path / "three.png"
    Image.fromarray(np.stack([pixels] * 3, -1)).save(path)
    page.goto(f"{page.base_url}/?model=digits")
    page.set_input_files("#upload", str(path))
    expect(page.locator("#upload-preview")).to_be_visible()
    expect(page.locator("#link-note")).to_contain_text("cannot be kept in a link")
    page.click("#analyze")
    wait_ready(page)
    assert base64.b64decode(page.sent[-1]["image"]) == path.read_bytes()
    answer = api(image_server, base64.b64encode(path.read_bytes()).decode())
    expect(page.locator("#prediction-text")).to_have_attribute("data-class", answer["image"]["prediction"])
    assert "draw" not in parse_qs(urlparse(page.url).query)
    wait_overlays(page)
    m = head_matrix(answer, "encoder", 0, 0)
    np.testing.assert_allclose(overlay(page, 0, 0)["values"], patch_row(answer, m, answer["image"]["class_token"]),
                               atol=m.max() / 255, rtol=0)
    stroke(page, [(0.3, 0.3), (0.7, 0.7)])  # drawing goes back to the pad
    expect(page.locator("#upload-preview")).to_be_hidden()
    page.click("#analyze")
    wait_ready(page)
    sent = Image.open(io.BytesIO(base64.b64decode(page.sent[-1]["image"])))
    size = next(m for m in image_server.client.get("/api/models").json()["models"] if m["name"] == "digits")["image"]["size"]
    assert sent.size == (size[1], size[0]) and "draw" in parse_qs(urlparse(page.url).query)


def test_rollout_over_the_picture_is_the_class_tokens_row_of_the_rollout(ipage, image_server):
    page = ipage
    page.goto(f"{page.base_url}/?model=digits&rollout=1")
    draw_seven(page)
    page.click("#analyze")
    wait_ready(page)
    answer = api(image_server, page.sent[-1]["image"], rollout=True)
    canvas = page.locator('canvas.rollout-overlay[data-kind="encoder"]')
    expect(canvas).to_have_count(1)
    r = np.asarray(answer["rollout"]["encoder"])
    order = [answer["rollout_about"]["dims"].index(d) for d in ("query_pos", "key_pos")]
    r = r.transpose(order)
    cls = answer["image"]["class_token"]
    np.testing.assert_allclose(json.loads(canvas.get_attribute("data-values")), np.delete(r[cls], cls), atol=1e-6, rtol=0)


def test_a_text_model_on_the_same_page_is_unchanged(ipage):
    page = ipage
    page.goto(f"{page.base_url}/?model=digits")
    expect(page.locator("#pad")).to_be_visible()
    page.select_option("#model", "minilm")
    expect(page.locator("#text")).to_be_visible()
    expect(page.locator("#image-input")).to_be_hidden()
    page.fill("#text", "The cat sat on the mat.")
    page.click("#analyze")
    wait_ready(page)
    expect(page.locator('canvas.head[data-kind="encoder"]')).to_have_count(72)
    expect(page.locator("canvas.overlay")).to_have_count(0)
    expect(page.locator("#prediction")).to_be_hidden()
    assert page.sent[-1]["text"] == "The cat sat on the mat." and "image" not in page.sent[-1]
    assert parse_qs(urlparse(page.url).query)["text"] == ["The cat sat on the mat."]


def test_at_phone_width_nothing_scrolls_sideways(browser, image_server):
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True)
    try:
        page = context.new_page()
        page.goto(f"{image_server.url}/?{urlencode({'model': 'digits', 'rollout': '1'})}")
        expect(page.locator("#pad")).to_be_visible()
        box = page.locator("#pad").bounding_box()
        page.touchscreen.tap(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # a finger inks too
        assert set(pad_pixels(page)) != {"0"}
        draw_seven(page)
        page.click("#analyze")
        wait_ready(page)
        wait_overlays(page)
        wide = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert wide[0] <= wide[1], wide
    finally:
        context.close()


def test_a_tab_that_reads_texts_says_why_it_does_not_apply_to_an_image_model(ipage):
    from headscope.server.tabs import TABS

    page = ipage
    not_here = [t for t in TABS if t.not_for_images]
    assert not_here  # the registry names them; each says why in words, and its controls are hidden
    page.goto(f"{page.base_url}/?model=digits&tab={not_here[0].name}")
    note = page.locator(f"#tab-{not_here[0].name} [data-not-here]")
    expect(note).to_be_visible()
    expect(note).to_contain_text(not_here[0].not_for_images)
    assert page.locator(f"#tab-{not_here[0].name} > :not([data-not-here]):not(.tab-error):visible").count() == 0
    page.select_option("#model", "minilm")  # a text model: the tab is back
    expect(note).to_be_hidden()
    assert page.locator(f"#tab-{not_here[0].name} > :not([data-not-here]):not(.tab-error):visible").count() > 0


# a digit drawn in a link (the pad's `draw`: one hex digit per pixel): a slanted stroke and a bar, as a "7"
def seven_link(image_server) -> str:
    size = next(m for m in image_server.client.get("/api/models").json()["models"] if m["name"] == "digits")["image"]["size"]
    pixels = np.zeros(size, dtype=int)
    pixels[0, 1:-1] = LEVELS
    for i in range(1, size[0]):
        pixels[i, max(0, size[1] - 2 - i // 2)] = LEVELS
    return "".join(f"{v:x}" for v in pixels.ravel())


def png_of(hexes: str, size) -> str:
    buf = io.BytesIO()
    Image.fromarray((levels(hexes, size).astype(np.int64) * 255 // LEVELS).astype(np.uint8)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_ablating_heads_shows_the_ablated_prediction_and_the_effect(ipage, image_server):
    page = ipage
    draw = seven_link(image_server)
    page.goto(f"{page.base_url}/?{urlencode({'model': 'digits', 'draw': draw, 'ablate': 'encoder:0:0,encoder:1:1'})}")
    wait_ready(page)
    sent = page.sent[-1]
    assert sent["ablate"] == [{"kind": "encoder", "layer": 0, "head": 0}, {"kind": "encoder", "layer": 1, "head": 1}]
    answer = api(image_server, sent["image"], ablate=sent["ablate"], ablation=sent["ablation"])
    after = answer["effect"]["prediction"]
    expect(page.locator("#prediction-ablated")).to_contain_text(f"with the heads ablated: {after}")
    expect(page.locator("#effect")).to_be_visible()
    expect(page.locator('canvas.overlay[data-layer="0"][data-head="0"]')).to_have_class("overlay ablated")
    assert page.locator('canvas.head[data-ablated="1"]').count() == 2


def test_value_norms_are_drawn_over_the_picture_as_the_api_gives_them(ipage, image_server):
    page = ipage
    draw = seven_link(image_server)
    page.goto(f"{page.base_url}/?{urlencode({'model': 'digits', 'draw': draw, 'weights': 'value_norm'})}")
    wait_ready(page)
    wait_overlays(page)
    answer = api(image_server, page.sent[-1]["image"], weights="value_norm")
    assert answer["weights"]["name"] == "value_norm"
    m = head_matrix(answer, "encoder", 2, 1)
    np.testing.assert_allclose(overlay(page, 2, 1)["values"], patch_row(answer, m, answer["image"]["class_token"]),
                               atol=m.max() / 255, rtol=0)
    expect(page.locator("section.overlay-grid .hint").first).to_contain_text(answer["weights"]["label"])


def test_the_mechanism_and_the_metric_tabs_work_for_an_image_model(ipage, image_server):
    page = ipage
    draw = seven_link(image_server)
    page.goto(f"{page.base_url}/?{urlencode({'model': 'digits', 'draw': draw, 'tab': 'mechanism', 'layer': 1, 'head': 2, 'query': 0})}")
    wait_ready(page)
    page.wait_for_function("() => document.getElementById('mech-steps').dataset.state === 'ready'", timeout=60_000)
    image = page.sent[-1]["image"]
    explained = image_server.client.post("/api/explain", json={"model": "digits", "image": image, "kind": "encoder",
                                                               "layer": 1, "head": 2, "query": 0})
    assert explained.status_code == 200
    weights = page.evaluate("document.querySelector('figure[data-step=\"weights\"] .mech-plot').data[0].z")[0]
    m = head_matrix(api(image_server, image), "encoder", 1, 2)
    assert weights == pytest.approx(m[0].tolist(), abs=1e-6)  # the class token's row, exactly
    assert page.locator("#mech-query option").all_text_contents()[:2] == ["0: [CLS]", "1: r0c0"]
    page.click("#tab-button-table")  # the per-head metrics of POST /api/heads, for the picture
    heads = api(image_server, image)["heads"]["encoder"]  # one record per layer x head
    expect(page.locator("#tab-table tr[data-layer]")).to_have_count(len(heads))


def test_compare_says_a_second_sentence_needs_a_text_model(ipage, image_server):
    page = ipage
    page.goto(f"{page.base_url}/?{urlencode({'model': 'digits', 'draw': seven_link(image_server), 'tab': 'compare'})}")
    wait_ready(page)
    sent = len(page.sent)
    page.fill("#compare-text", "The cat sat.")
    page.click("#compare-texts")
    expect(page.locator("#status")).to_contain_text("needs a text model: digits takes a picture")
    assert len(page.sent) == sent  # nothing asked of the server

