"""The page in real headless Chromium (Debian's /usr/bin/chromium driven by Playwright):
analyze from the text box, the 72-head grid, the detail heatmap, URL state, hostile text,
long inputs, and nothing loaded from another origin."""

from pathlib import Path
from urllib.parse import urlencode, urlparse

import numpy as np
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

SENTENCE = "The cat sat on the mat; the cat saw 1 1 2 dogs."


def open_page(page, **params):
    page.goto(f"{page.base_url}/?{urlencode(params)}" if params else page.base_url)


def wait_ready(page):
    page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=60_000)


def heatmap_ticks(page, axis):
    return page.locator(f"#heatmap .{axis}tick text").all_text_contents()


def test_analyze_from_the_text_box_draws_all_72_heads(page, minilm):
    open_page(page)
    page.fill("#text", SENTENCE)
    page.press("#text", "Control+Enter")
    wait_ready(page)
    heads = page.locator('canvas.head[data-kind="encoder"]')
    expect(heads).to_have_count(72)
    names = {(int(c.get_attribute("data-layer")), int(c.get_attribute("data-head"))) for c in heads.all()}
    assert names == {(l, h) for l in range(6) for h in range(12)}
    tokens = minilm.analyze(SENTENCE).tokens
    assert page.locator("#status").text_content().startswith(f"minilm: {len(tokens)} tokens")
    assert "text=" in page.url and "cat" in page.url
    # every thumbnail is painted: not blank
    blank = page.evaluate("""() => [...document.querySelectorAll('canvas.head')].filter(c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 0; i < d.length; i += 4) if (d[i] < 200) return false;
        return true; }).length""")
    assert blank == 0


def test_analyze_button_and_hover_names_the_head(page):
    open_page(page)
    page.fill("#text", SENTENCE)
    page.click("#analyze")
    wait_ready(page)
    page.hover('canvas.head[data-layer="3"][data-head="7"]')
    expect(page.locator("#hover-name")).to_contain_text("L3H7")
    assert page.get_attribute('canvas.head[data-layer="3"][data-head="7"]', "aria-label") == "L3H7"


def test_plotly_loads_only_when_a_head_is_opened(page):
    requested = []
    page.on("request", lambda r: requested.append(r.url))
    open_page(page, text=SENTENCE)
    wait_ready(page)
    assert not any(u.endswith("plotly.min.js") for u in requested)
    page.click('canvas.head[data-layer="0"][data-head="2"]')
    page.wait_for_selector("#heatmap .xtick text")
    assert any(u.endswith("/vendor/plotly.min.js") for u in requested)
    assert all(u.startswith(page.base_url) or u.startswith("data:") or u.startswith("blob:") for u in requested), requested


def test_clicking_a_head_opens_its_heatmap_with_every_token_on_both_axes(page, minilm):
    open_page(page, text=SENTENCE)
    wait_ready(page)
    page.click('canvas.head[data-layer="0"][data-head="2"]')
    page.wait_for_selector("#heatmap .xtick text")
    expect(page.locator("#detail-title")).to_have_text("L0H2 · encoder")
    tokens = minilm.analyze(SENTENCE).tokens
    # repeated ("the", "cat", "1") and number-like tokens keep their own row and column
    assert heatmap_ticks(page, "x") == tokens
    assert heatmap_ticks(page, "y") == tokens
    assert "layer=0" in page.url and "head=2" in page.url
    expect(page.locator("#detail-roles")).to_contain_text("previous_token")
    expect(page.locator("#heatmap .colorbar")).to_have_count(1)


def test_hover_text_says_query_key_and_weight(page, minilm):
    open_page(page, text=SENTENCE, layer=0, head=2)
    page.wait_for_selector("#heatmap .xtick text")
    analysis = minilm.analyze(SENTENCE)
    weight = float(analysis.patterns["encoder"][0, 2, 3, 2])  # query 3 ("sat") -> key 2 ("cat")
    box = page.locator("#heatmap .nsewdrag").first.bounding_box()
    T = len(analysis.tokens)
    page.mouse.move(box["x"] + box["width"] * (2.5 / T), box["y"] + box["height"] * (3.5 / T))
    hover = page.locator("#heatmap .hovertext")
    expect(hover).to_have_count(1)
    assert hover.text_content() == f"sat → cat: {weight:.3f}"


def test_arrow_keys_and_buttons_step_through_heads_and_layers(page):
    open_page(page, text=SENTENCE, layer=0, head=2)
    page.wait_for_selector("#heatmap .xtick text")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#detail-title")).to_have_text("L0H3 · encoder")
    page.keyboard.press("ArrowDown")
    expect(page.locator("#detail-title")).to_have_text("L1H3 · encoder")
    page.click("#prev-head")
    expect(page.locator("#detail-title")).to_have_text("L1H2 · encoder")
    page.click("#prev-layer")
    expect(page.locator("#detail-title")).to_have_text("L0H2 · encoder")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#detail-title")).to_have_text("L0H0 · encoder")
    page.keyboard.press("ArrowLeft")  # before the first head of layer 0: stays
    expect(page.locator("#detail-title")).to_have_text("L0H0 · encoder")
    assert "layer=0" in page.url and "head=0" in page.url
    for _ in range(11):
        page.keyboard.press("ArrowRight")
    expect(page.locator("#detail-title")).to_have_text("L0H11 · encoder")
    page.keyboard.press("ArrowRight")  # past the last head of a layer: the next layer's first
    expect(page.locator("#detail-title")).to_have_text("L1H0 · encoder")
    page.keyboard.press("ArrowLeft")  # and back across the layer boundary
    expect(page.locator("#detail-title")).to_have_text("L0H11 · encoder")
    page.click("#detail-close")
    expect(page.locator("#detail")).not_to_be_visible()
    assert "head=" not in page.url


def test_a_shared_url_reproduces_the_view(page, minilm):
    open_page(page, text=SENTENCE, model="minilm", layer=1, head=4)
    page.wait_for_selector("#heatmap .xtick text")
    expect(page.locator("#detail-title")).to_have_text("L1H4 · encoder")
    assert page.input_value("#text") == SENTENCE
    assert page.input_value("#model") == "minilm"
    assert heatmap_ticks(page, "x") == minilm.analyze(SENTENCE).tokens


HOSTILE = '<img src=x onerror="window.__pwned=1"> <b>bold</b> &amp; <script>window.__pwned=2</script>'


def test_hostile_text_runs_nothing_and_shows_literally(page, minilm):
    open_page(page)
    page.fill("#text", HOSTILE)
    page.click("#analyze")
    wait_ready(page)
    page.click('canvas.head[data-layer="0"][data-head="0"]')
    page.wait_for_selector("#heatmap .xtick text")
    assert page.evaluate("window.__pwned") is None
    assert page.locator('img[src="x"]').count() == 0
    assert page.locator("#heatmap b, #heatmap script").count() == 0
    assert heatmap_ticks(page, "x") == minilm.analyze(HOSTILE).tokens  # '<', '>', '&' literally
    assert page.input_value("#text") == HOSTILE
    # and through a shared URL, with the word view merging pieces
    open_page(page, text=HOSTILE, layer=0, head=1, words=1)
    page.wait_for_selector("#heatmap .xtick text")
    assert page.evaluate("window.__pwned") is None
    assert "<" in heatmap_ticks(page, "x")


def long_text():
    words = "every head of the model reads from some earlier or later words in the text".split()
    return " ".join(words[i % len(words)] for i in range(510))


def test_a_512_token_text_renders_with_thinned_labels_that_zoom_brings_back(page, minilm):
    answers = []
    page.on("response", lambda r: answers.append(r) if r.url.endswith("/api/attention") else None)
    open_page(page, text=long_text())
    wait_ready(page)
    expect(page.locator('canvas.head[data-kind="encoder"]')).to_have_count(72)
    assert page.locator("#status").text_content().startswith("minilm: 512 tokens")
    grid_bytes = int(answers[0].header_value("content-length") or len(answers[0].body()))
    assert grid_bytes <= 1_500_000  # pooled thumbnails, not 72 x 512 x 512 bytes
    page.click('canvas.head[data-layer="2"][data-head="5"]')
    page.wait_for_selector("#heatmap .xtick text")
    shown = np.asarray(page.evaluate("document.getElementById('heatmap').data[0].z"))
    assert shown.shape == (512, 512)  # the opened head is fetched at full resolution
    exact = minilm.analyze(long_text(), truncate=True).patterns["encoder"][2, 5].numpy()
    assert np.abs(shown - exact).max() <= exact.max() / 510 + 1e-6
    shown = heatmap_ticks(page, "x")
    assert 10 < len(shown) < 200  # thinned: readable, not 512 overlapping labels
    page.evaluate("Plotly.relayout(document.getElementById('heatmap'), {'xaxis.range': [99.5, 120.5], 'yaxis.range': [120.5, 99.5]})")
    page.wait_for_function("() => document.querySelectorAll('#heatmap .xtick text').length === 21")
    words = long_text().split()
    assert heatmap_ticks(page, "x") == words[99:120]  # positions 100..120 are words 99..119
    assert len(heatmap_ticks(page, "y")) == 21


def test_errors_show_in_the_page_and_it_keeps_working(page):
    open_page(page)
    page.click("#analyze")
    expect(page.locator("#status")).to_contain_text("Type or paste")
    page.fill("#text", "a short first text")
    page.click("#analyze")
    wait_ready(page)
    expect(page.locator("canvas.head")).to_have_count(72)
    page.fill("#text", "word " * 600)
    page.click("#analyze")
    # the page's own words, naming its own checkbox, and the old result is gone, not left as if it were the new one's
    expect(page.locator("#status")).to_have_text(
        'This text has 602 tokens; minilm reads at most 512. Shorten it, or tick "cut to fit" to analyze its first 512.')
    expect(page.locator("canvas.head")).to_have_count(0)
    page.check("#truncate")
    page.click("#analyze")
    wait_ready(page)
    expect(page.locator("#status")).to_contain_text("text cut to fit: read up to character 2549 of 3000 (… word word word word)")
    # Chromium logs every 4xx answer as a console error; this one was asked for, and is the only one
    assert page.console_errors == ["Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"]
    page.console_errors.clear()


def test_a_kind_that_is_no_kind_in_the_url_is_ignored(page):
    """'constructor' is a property of every JS object: it must not be taken for an attention kind."""
    open_page(page, text="hi", kind="constructor", layer=0, head=0)
    page.wait_for_selector("#heatmap .xtick text")
    assert "kind=encoder" in page.url, page.url  # the model's first kind instead


def test_an_example_for_the_chosen_model(page, models):
    open_page(page)
    page.select_option("#model", "dates")
    page.click("#example")
    wait_ready(page)
    assert page.locator("#text").input_value() == models["dates"].info.example
    expect(page.locator("#output-text")).to_have_text("2026-11-25")


def test_metric_definitions_and_links_are_on_the_page(page, client):
    open_page(page, text=SENTENCE, tab="table")
    wait_ready(page)
    page.click("#glossary summary")
    expect(page.locator("#glossary dt", has_text="entropy_normalized")).to_be_visible()
    assert client.get(page.locator('#glossary a[href="/docs/metrics.html"]').get_attribute("href")).status_code == 200
    assert page.locator('#glossary a[href="/docs"]').count() == 1


def test_phone_width_keeps_every_control_reachable(browser, live_server):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(f"{live_server.url}/?{urlencode({'text': SENTENCE, 'layer': 0, 'head': 2, 'kind': 'encoder'})}")
    page.wait_for_selector("#heatmap .xtick text")
    box = page.locator("#detail-close").bounding_box()
    assert 0 <= box["x"] and box["x"] + box["width"] <= 390
    page.click("#detail-close")
    assert "layer=" not in page.url
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing pushes the page sideways
    for tab in page.locator("#tabs button").all():
        b = tab.bounding_box()
        assert b["x"] + b["width"] <= 390
    context.close()


def test_fit_on_screen_puts_every_head_in_the_viewport(browser, live_server):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server.url}/?{urlencode({'text': SENTENCE})}")
    page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=60_000)
    last = page.locator('canvas.head[data-layer="5"][data-head="11"]')
    assert last.bounding_box()["y"] + last.bounding_box()["height"] > 900  # without it, layer 5 is below the fold
    page.check("#opt-fit")
    assert "fit=1" in page.url
    box = last.bounding_box()
    assert box["y"] + box["height"] <= 900 and box["width"] >= 40
    context.close()


def test_model_picker_lists_the_models_with_their_kinds(page, models):
    open_page(page)
    assert page.locator("#model option").evaluate_all("os => os.map(o => o.value)") == list(models)
    labels = page.locator("#model option").all_text_contents()
    for label, model in zip(labels, models.values(), strict=True):
        assert label.endswith(f": {', '.join(model.info.kinds)})")


@pytest.mark.parametrize("name", ["minilm", "dates", "induction"])
def test_model_in_the_url_is_restored_with_its_grids(page, models, name):
    model = models[name]
    open_page(page, text="25 November 2026", model=name)
    wait_ready(page)
    assert page.locator("#model").input_value() == name
    for kind in model.info.kinds:
        L = model.analyze("25 November 2026").patterns[kind].shape[0]
        expect(page.locator(f'canvas.head[data-kind="{kind}"]')).to_have_count(L * model.info.heads)


def test_export_csv_png_and_svg_of_the_open_head(page, minilm):
    open_page(page, text=SENTENCE, layer=0, head=2)
    page.wait_for_selector("#heatmap .xtick text")
    with page.expect_download() as info:
        page.click("#export-csv")
    csv_text = Path(info.value.path()).read_text(encoding="utf-8")
    assert info.value.suggested_filename == "L0H2-encoder.csv"
    lines = csv_text.strip().split("\n")
    tokens = minilm.analyze(SENTENCE).tokens
    assert lines[0].split(",")[1:] == tokens and len(lines) == len(tokens) + 1
    pattern = minilm.analyze(SENTENCE).patterns["encoder"][0, 2]
    row = [float(v) for v in lines[4].split(",")[1:]]
    assert row == pytest.approx(pattern[3].tolist(), rel=1e-6, abs=1e-9)  # the exact float32 weights
    for button, suffix, magic in (("#export-png", ".png", b"\x89PNG"), ("#export-svg", ".svg", b"<svg")):
        with page.expect_download() as info:
            page.click(button)
        assert info.value.suggested_filename == "L0H2-encoder" + suffix
        assert Path(info.value.path()).read_bytes()[:4] == magic[:4]


def test_one_head_or_many_shows_the_measures_and_two_models_side_by_side(page):
    import json

    from headscope.training.one_head_or_many import DEFAULT_OUT

    record = json.loads(DEFAULT_OUT.read_text())
    open_page(page, tab="heads-experiment")
    page.wait_for_function("() => document.getElementById('ohm-grids').dataset.state === 'ready'", timeout=60_000)
    assert page.locator("#ohm-table tbody tr").count() == len(record["runs"])
    expect(page.locator("#ohm-exact .bars path, #ohm-exact .point").first).to_be_attached()
    for heads, example in record["examples"].items():
        grid = page.locator(f'.ohm-grid[data-heads="{heads}"]')
        for kind, pattern in example["patterns"].items():
            expect(grid.locator(f'canvas.head[data-kind="{kind}"]')).to_have_count(len(pattern) * int(heads))


def test_one_head_or_many_is_readable_side_by_side_with_tokens_and_says_its_conclusions(page, client):
    import json

    from headscope.training.one_head_or_many import DEFAULT_OUT

    record = json.loads(DEFAULT_OUT.read_text())
    api = client.get("/api/one-head-or-many").json()
    assert api["conclusions_from"] == "docs/one-head-or-many.md" and len(api["conclusions"]) >= 4
    page.set_viewport_size({"width": 1280, "height": 900})
    open_page(page, tab="heads-experiment")
    page.wait_for_function("() => document.getElementById('ohm-grids').dataset.state === 'ready'", timeout=60_000)
    # the conclusions, as the document says them
    items = page.locator("#ohm-conclusions li").all_text_contents()
    assert items == [f"{c['claim']}: {c['text']}" if c["claim"] else c["text"] for c in api["conclusions"]]
    # small multiples, not stretched: every thumbnail a bounded square, the tab of a reasonable height
    sizes = page.evaluate("() => [...document.querySelectorAll('#ohm-grids canvas.head')].map((c) => "
                          "[c.getBoundingClientRect().width, c.getBoundingClientRect().height])")
    assert sizes and all(w <= 64 and h <= 64 for w, h in sizes)
    tall = page.evaluate("() => document.getElementById('tab-heads-experiment').getBoundingClientRect().height")
    assert tall < 4000  # it was 7,289 px with one head's squares stretched to the width
    boxes = page.locator(".ohm-grid").evaluate_all("b => b.map((x) => x.getBoundingClientRect().top)")
    assert len(boxes) == 2 and abs(boxes[0] - boxes[1]) < 1  # side by side
    # each model's head drawn large with the example's own tokens on its axes; a click draws another head
    for heads, example in record["examples"].items():
        box = page.locator(f'.ohm-grid[data-heads="{heads}"]')
        matrix = box.locator("canvas.ohm-matrix")
        kind = matrix.get_attribute("data-kind")
        layout = example["layout"][kind]
        shown = lambda tokens: ["␣" if t == " " else t for t in tokens]  # noqa: E731 - a space token, made visible
        names = {"tokens": shown(example["tokens"]), "output_tokens": shown(example["output_tokens"])}
        assert json.loads(matrix.get_attribute("data-rows")) == names[layout["rows"]]
        assert json.loads(matrix.get_attribute("data-cols")) == names[layout["columns"]]
        last = int(heads) - 1
        box.locator(f'canvas.head[data-kind="cross"][data-layer="1"][data-head="{last}"]').click()
        expect(box.locator("canvas.ohm-matrix")).to_have_attribute("data-head", str(last))
        assert box.locator("canvas.ohm-matrix").get_attribute("data-kind") == "cross"
        assert json.loads(box.locator("canvas.ohm-matrix").get_attribute("data-cols")) == names["tokens"]
    page.set_viewport_size({"width": 390, "height": 800})  # a phone: nothing scrolls sideways
    assert page.evaluate("() => document.scrollingElement.scrollWidth") <= 390


@pytest.mark.parametrize("name", ["metrics", "ablation", "importance", "probes", "one-head-or-many"])
def test_the_documents_the_page_links_to_are_served_as_markdown(client, name):
    r = client.get(f"/docs/{name}.md")
    assert r.status_code == 200 and r.headers["content-type"] == "text/markdown; charset=utf-8"
    assert r.text == (Path(__file__).parents[2] / "docs" / f"{name}.md").read_text()


def test_a_tab_links_to_its_document_as_a_readable_page_with_its_markdown_twin(page):
    open_page(page, text=SENTENCE, tab="table")
    wait_ready(page)
    page.locator("#tab-table .tab-docs a").click()
    page.wait_for_load_state()
    assert urlparse(page.url).path == "/docs/metrics.html"
    markdown = (Path(__file__).parents[2] / "docs" / "metrics.md").read_text()
    title = markdown.splitlines()[0].removeprefix("# ")
    expect(page.locator("#doc h1")).to_have_text(title)  # rendered, not shown as Markdown source
    assert page.locator("#doc h2").count() == markdown.count("\n## ")
    assert page.locator("#doc table").count() >= 1 and page.locator("#doc pre code").count() >= 1
    assert "# " + title not in page.locator("#doc").inner_text()
    page.set_viewport_size({"width": 390, "height": 800})  # a phone: formulas and tables scroll in their boxes
    assert page.evaluate("() => document.scrollingElement.scrollWidth") <= 390
    page.locator(".doc-others a", has_text="ablation").click()
    page.wait_for_load_state()
    assert urlparse(page.url).path == "/docs/ablation.html"
    page.click("#doc-markdown")
    page.wait_for_load_state()
    assert page.locator("body").inner_text().startswith("# Head ablation")


@pytest.mark.parametrize("path", ["/docs/README.md", "/docs/dates.png.md", "/docs/%2E%2E%2Fpyproject.md",
                                  "/docs/README.html", "/docs/%2E%2E%2Fpyproject.html", "/docs/dates.md.html"])
def test_no_other_file_is_served_from_docs(client, path):
    r = client.get(path)
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_plotly_is_fetched_after_the_grid_is_shown_so_the_first_opened_head_does_not_wait(page):
    page.goto(f"{page.base_url}/?{urlencode({'text': 'The cat sat on the mat.'})}")
    wait_ready(page)
    for _ in range(200):  # no head opened: it comes once the page is idle
        if page.evaluate("() => Boolean(window.Plotly)"):
            break
        page.wait_for_timeout(100)
    assert page.evaluate("() => Boolean(window.Plotly)")
    order = page.evaluate("""() => {
      const entries = performance.getEntriesByType('resource');
      const at = (end) => entries.find((e) => e.name.endsWith(end));
      return [at('/api/heads').responseEnd, at('/vendor/plotly.min.js').startTime];
    }""")
    assert order[1] >= order[0]  # after the grid's metrics: the grid never waits for it
    expect(page.locator("dialog#detail")).not_to_be_visible()
