"""First use of the page (issue 18, items 13-24): what a newcomer hits, in real Chromium."""

from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def wait_ready(page, timeout=60_000):
    page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=timeout)


def wait_settled(page, timeout=60_000):
    page.wait_for_function("() => ['ready', 'error'].includes(document.body.dataset.state)", timeout=timeout)


def ticks(page, axis):
    return page.locator(f"#heatmap .{axis}tick text").all_text_contents()


# ---- 15: offsets count code points, JavaScript strings UTF-16 units ------------------------------------------------

EMOJI_TEXT = "🙂🙂 tokenization is unbelievable"


def test_words_after_an_emoji_are_labelled_with_their_own_text(page, client):
    body = client.post("/api/attention", json={"text": EMOJI_TEXT, "model": "minilm"}).json()
    assert "##ization" in body["tokens"]  # the words view has pieces to merge
    query = urlencode({"text": EMOJI_TEXT, "model": "minilm", "words": 1, "kind": "encoder", "layer": 0, "head": 0})
    page.goto(f"{page.base_url}/?{query}")
    page.wait_for_selector("#heatmap .xtick text")
    labels = ticks(page, "x")
    assert "tokenization" in labels and "unbelievable" in labels, labels


def test_the_cut_to_fit_note_counts_characters_as_the_server_does(page, minilm):
    text = "🙂 " * 30 + "word " * 600
    end = max(o[1] for o in minilm.analyze(text, truncate=True).offsets if o)
    page.goto(f"{page.base_url}/?{urlencode({'text': text, 'model': 'minilm', 'truncate': 1})}")
    wait_ready(page)
    status = page.locator("#status").text_content()
    assert f"read up to character {end} of {len(text)} (…{text[end - 20:end]})" in status, status


# ---- 19: ablation on the dates model -------------------------------------------------------------------------------

DATE = "Wednesday, the 25th of November 2026"


def test_the_output_line_shows_the_ablated_output_beside_the_original_and_the_link_ticks_ablate_mode(page, client):
    heads = "cross:0:0,cross:0:1,cross:0:2,cross:0:3,cross:1:0,cross:1:1,cross:1:2,cross:1:3"
    ablate = [dict(zip(("kind", "layer", "head"), (k, int(l), int(h)))) for k, l, h in (x.split(":") for x in heads.split(","))]
    api = client.post("/api/attention", json={"text": DATE, "model": "dates", "ablate": ablate}).json()
    assert api["effect"]["output_text"] != api["output_text"]  # the heads matter: the output changes
    page.goto(f"{page.base_url}/?{urlencode({'text': DATE, 'model': 'dates', 'ablate': heads})}")
    page.wait_for_function("() => document.body.dataset.state === 'ready' && !document.querySelector('#effect').hidden",
                           timeout=60_000)
    expect(page.locator("#opt-ablate")).to_be_checked()
    expect(page.locator("#output-text")).to_have_text(api["output_text"])
    expect(page.locator("#output-ablated")).to_be_visible()
    expect(page.locator("#output-ablated")).to_contain_text(api["effect"]["output_text"])
    expect(page.locator("#output-valid")).to_contain_text("without ablation")  # the badge checks the original


def test_no_stale_date_badge_on_the_induction_model_after_dates(page):
    page.goto(f"{page.base_url}/?model=dates&text=31%2F02%2F2024")
    wait_ready(page)
    expect(page.locator("#output-valid")).to_have_text("not a valid date")
    page.select_option("#model", "induction")
    page.fill("#text", "k#9Qz.m>Ab k#9Qz")
    page.fill("#gen", "4")
    page.click("#analyze")
    wait_ready(page)
    expect(page.locator("#output")).to_be_visible()  # the continuation
    expect(page.locator("#output-valid")).to_be_hidden()
    expect(page.locator("#output-ablated")).to_be_hidden()


# ---- 14 and 20: links of long texts, and the words of a refusal -----------------------------------------------------

LONG = "word " * 2000  # 10,000 characters, 2,000 tokens: more than MiniLM's 512


def query(page):
    return parse_qs(urlparse(page.url).query)


def test_a_cut_text_keeps_in_the_link_only_the_part_read_and_the_link_opens_it(page, minilm):
    read = minilm.analyze(LONG, truncate=True)
    end = max(o[1] for o in read.offsets if o)
    page.goto(page.base_url)
    page.fill("#text", LONG)
    page.check("#truncate")
    page.click("#analyze")
    wait_ready(page)
    assert query(page)["text"] == [LONG[:end]]  # what the model read, not all 10,000 characters
    expect(page.locator("#link-note")).to_contain_text(f"({end} of {len(LONG)} characters)")
    page.goto(page.url)  # the shared link
    wait_ready(page)
    assert page.locator("#status").text_content().startswith(f"minilm: {len(read.tokens)} tokens")


def test_a_refused_long_text_says_what_to_do_and_the_link_drops_it(page):
    page.goto(f"{page.base_url}/?{urlencode({'text': 'A short first text.', 'model': 'minilm'})}")
    wait_ready(page)
    page.fill("#text", LONG)
    page.click("#analyze")
    wait_settled(page)
    expect(page.locator("#status")).to_contain_text('This text has 2002 tokens; minilm reads at most 512')
    expect(page.locator("#status")).to_contain_text('tick "cut to fit"')
    assert "text" not in query(page)  # neither the refused text nor the one before
    expect(page.locator("#link-note")).to_contain_text('Tick "cut to fit"')
    page.console_errors.clear()  # the browser logs the 422


def test_too_many_characters_reads_as_the_page_words_not_the_api(page, minilm):
    text = "a" * (minilm.info.max_chars + 1)
    page.goto(page.base_url)
    page.fill("#text", text)
    page.click("#analyze")
    wait_settled(page)
    status = page.locator("#status").text_content()
    assert f"This text has {len(text):,} characters; minilm reads at most {minilm.info.max_chars:,}" in status
    assert 'tick "cut to fit"' in status and "truncate" not in status, status
    assert "text" not in query(page)
    page.console_errors.clear()


@pytest.fixture(scope="module")
def small_headers_server(models):
    """A server with a small max_header_bytes: a link of a text the model reads whole is already too long."""
    from headscope.server.app import create_app
    from headscope.server.settings import Settings
    from tests.conftest import LiveServer

    with LiveServer(create_app(Settings(max_header_bytes=4096), models=models)) as server:
        yield server


def test_a_link_too_long_for_the_server_keeps_no_text_and_says_so(browser, small_headers_server):
    from tests.conftest import watched_page

    text = "the cat " * 150  # 1,200 characters, 302 tokens: MiniLM reads it whole; its URL is over 4096 / 4
    with watched_page(browser, small_headers_server) as page:
        page.goto(small_headers_server.url)
        page.fill("#text", text)
        page.click("#analyze")
        wait_ready(page)
        assert "text" not in query(page) and query(page)["model"] == ["minilm"]
        assert len(page.url) < 4096 // 4
        expect(page.locator("#link-note")).to_contain_text("too long for a link")
        page.click('canvas.head[data-layer="0"][data-head="1"]')  # the page still works: its requests fit
        page.wait_for_selector("#heatmap .xtick text")


# ---- 21: the URL keeps Compare's heads and the Head map's colouring -------------------------------------------------

SENTENCE = "The keys to the cabinet are on the table."


def test_the_link_keeps_the_heads_compared(page):
    page.goto(f"{page.base_url}/?{urlencode({'text': SENTENCE, 'model': 'minilm', 'tab': 'compare'})}")
    wait_ready(page)
    page.fill("#compare-a", "L0H2")
    page.fill("#compare-b", "L3H7")
    page.click("#compare-heads")
    expect(page.locator("#compare-plots")).to_have_attribute("data-compared", "L0H2 L3H7")
    assert query(page)["compare"] == ["L0H2,L3H7"] and query(page)["compare_kind"] == ["encoder"]
    page.goto(page.url)  # the shared link draws the same comparison
    wait_ready(page)
    expect(page.locator("#compare-plots")).to_have_attribute("data-compared", "L0H2 L3H7")
    expect(page.locator("#compare-a")).to_have_value("L0H2")


def test_the_link_keeps_the_head_maps_metric(page, client):
    page.goto(f"{page.base_url}/?{urlencode({'text': SENTENCE, 'model': 'minilm', 'tab': 'map'})}")
    wait_ready(page)
    page.wait_for_selector("button.map-cell")
    metrics = page.locator("#map-metric option").all_text_contents()
    other = next(m for m in metrics if m != page.locator("#map-metric").input_value())
    page.select_option("#map-metric", other)
    assert query(page)["metric"] == [other]
    page.goto(page.url)
    wait_ready(page)
    page.wait_for_selector("button.map-cell")
    expect(page.locator("#map-metric")).to_have_value(other)
    heads = client.post("/api/heads", json={"text": SENTENCE, "model": "minilm"}).json()["heads"]["encoder"]
    cell = page.locator('button.map-cell[data-layer="1"][data-head="3"]').get_attribute("data-value")
    value = next(h for h in heads if h["layer"] == 1 and h["head"] == 3)["metrics"][other]
    assert (cell == "" and value is None) or float(cell) == pytest.approx(value, abs=1e-9)


# ---- 17: the dates step slider starts with every row shown --------------------------------------------------------


def test_the_step_slider_starts_with_every_row_shown_alike(page):
    page.goto(f"{page.base_url}/?{urlencode({'text': DATE, 'model': 'dates'})}")
    wait_ready(page)
    rows = 11  # <s> and the 10 characters of 2026-11-25
    assert page.input_value("#step") == str(rows)
    expect(page.locator("#step-label")).to_contain_text("every row")
    expect(page.locator("#output-text .todo")).to_have_count(0)
    heads = page.evaluate("""() => [...document.querySelectorAll('canvas.head[data-kind="cross"]')].map(c =>
        ({width: c.width, data: Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)}))""")
    for head in heads:
        w = head["width"]
        dark_rows = [r for r in range(rows) if min(head["data"][r * w * 4:(r + 1) * w * 4][0::4]) < 190]
        assert len(dark_rows) > 1, dark_rows  # not only the last step's row at full strength
    assert "step" not in query(page)


# ---- 16: Mechanism: readable cell numbers, the projections' shapes -------------------------------------------------


def wcag_luminance(rgb):
    def linear(c):
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (linear(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def scale_colour(scale, t):
    """The colour of a Plotly colorscale ([[t, '#rrggbb'], ...]) at t, interpolated in RGB as Plotly does."""
    for (t0, c0), (t1, c1) in zip(scale, scale[1:]):
        if t <= t1:
            f = 0 if t1 == t0 else (t - t0) / (t1 - t0)
            a, b = ([int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in (c0, c1))
            return [x + (y - x) * f for x, y in zip(a, b)]
    return [int(scale[-1][1][i:i + 2], 16) for i in (1, 3, 5)]


def test_every_number_on_the_softmax_and_score_rows_is_readable(page):
    page.goto(f"{page.base_url}/?{urlencode({'tab': 'mechanism', 'text': 'The cat sat on the mat; the cat saw it.', 'model': 'minilm', 'kind': 'encoder', 'layer': 2, 'head': 5, 'query': 3})}")
    page.wait_for_function("() => document.getElementById('mech-steps').dataset.state === 'ready'", timeout=60_000)
    for step in ("weights", "scores"):
        plot = page.evaluate(f"""() => {{ const d = document.querySelector('figure[data-step="{step}"] .mech-plot');
            return {{ trace: d.data[0], annotations: d.layout.annotations }}; }}""")
        trace, notes = plot["trace"], plot["annotations"]
        assert len(notes) == len(trace["z"][0])
        for value, note in zip(trace["z"][0], notes, strict=True):
            if value is None:
                continue
            t = (value - trace["zmin"]) / (trace["zmax"] - trace["zmin"])
            cell = wcag_luminance(scale_colour(trace["colorscale"], t))
            text = wcag_luminance([int(note["font"]["color"][i], 16) * 17 for i in (1, 2, 3)] if len(note["font"]["color"]) == 4
                                  else [int(note["font"]["color"][i:i + 2], 16) for i in (1, 3, 5)])
            contrast = (max(cell, text) + 0.05) / (min(cell, text) + 0.05)
            assert contrast >= 4.5, (step, value, note["font"]["color"])  # WCAG AA for small text


def test_the_projections_shapes_are_those_of_the_models_weights(page, minilm):
    page.goto(f"{page.base_url}/?{urlencode({'tab': 'mechanism', 'text': 'The cat sat on the mat.', 'model': 'minilm', 'kind': 'encoder', 'layer': 2, 'head': 5, 'query': 1})}")
    page.wait_for_function("() => document.getElementById('mech-steps').dataset.state === 'ready'", timeout=60_000)
    attn = minilm.attention_modules()[("encoder", 2)]
    C = attn.qkv.in_features
    w_q = attn.qkv.weight[:C].T  # x W_Q: (C, H·D), the first third of the packed projection
    w_o = attn.out_proj.weight.T  # (H·D, C)
    shapes = dict(page.locator("#mech-params [data-param]").evaluate_all(
        "cs => cs.map(c => [c.dataset.param, c.dataset.shape])"))
    assert shapes["W_Q"] == shapes["W_K"] == shapes["W_V"] == ",".join(map(str, w_q.shape))
    assert shapes["W_O"] == ",".join(map(str, w_o.shape))
    expect(page.locator('#mech-params [data-param="W_Q"]')).to_contain_text(f"this head's columns: [{C}, {C // 12}]")


# ---- 13 and 24: a phone, 390 px wide ------------------------------------------------------------------------------


@pytest.fixture
def phone(browser, live_server):
    """A touch screen 390 px wide (an iPhone 12-14), on the live server; fails on any console error."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.base_url = live_server.url
    yield page
    context.close()
    assert errors == [], errors


@pytest.mark.parametrize("layer,head", [(2, 3), (0, 2)])
def test_the_first_tap_on_a_head_opens_that_head(phone, layer, head):
    phone.goto(f"{phone.base_url}/?{urlencode({'text': SENTENCE, 'model': 'minilm'})}")
    wait_ready(phone)
    canvas = phone.locator(f'canvas.head[data-kind="encoder"][data-layer="{layer}"][data-head="{head}"]')
    canvas.scroll_into_view_if_needed()
    before = canvas.bounding_box()
    canvas.tap()
    expect(phone.locator("#detail-title")).to_have_text(f"L{layer}H{head} · encoder")
    phone.keyboard.press("Escape")
    assert canvas.bounding_box()["y"] == pytest.approx(before["y"], abs=0.5)  # the hover line moved nothing


@pytest.mark.parametrize("tab", ["grid", "table", "playground", "heads-experiment", "mechanism", "compare", "map"])
def test_no_tab_scrolls_sideways_on_a_phone(phone, tab):
    phone.goto(f"{phone.base_url}/?{urlencode({'text': SENTENCE, 'model': 'minilm', 'tab': tab})}")
    wait_settled(phone)
    phone.wait_for_load_state("networkidle")
    assert phone.evaluate("() => document.documentElement.scrollWidth") <= 390


def test_the_tabs_take_at_most_three_rows_on_a_phone(phone):
    phone.goto(phone.base_url)
    tops = phone.locator("nav#tabs button").evaluate_all("bs => bs.map(b => Math.round(b.getBoundingClientRect().top))")
    assert len(set(tops)) <= 3, sorted(set(tops))


def test_the_effect_of_an_ablation_does_not_move_the_grid(page):
    page.goto(f"{page.base_url}/?{urlencode({'text': SENTENCE, 'model': 'minilm'})}")
    wait_ready(page)
    page.check("#opt-ablate")
    head = page.locator('canvas.head[data-kind="encoder"][data-layer="2"][data-head="5"]')
    before = head.bounding_box()
    head.click()
    page.wait_for_function("() => document.body.dataset.state === 'ready' && !document.querySelector('#effect').hidden",
                           timeout=60_000)
    expect(page.locator('#effect table[data-axis="tokens"]')).to_be_visible()
    assert head.bounding_box()["y"] == pytest.approx(before["y"], abs=0.5)  # the next click lands where it aims


# ---- 23: a starting point -----------------------------------------------------------------------------------------


def test_before_the_first_analyze_the_page_says_what_a_square_is_and_starts_an_example(page):
    page.goto(page.base_url)
    intro = page.locator("#intro")
    expect(intro).to_be_visible()
    expect(intro).to_contain_text("row i, column j is how much token i (the query) reads from token j (the key)")
    example = page.locator("#model option:checked").get_attribute("data-example")
    expect(page.locator("#intro-text")).to_contain_text(example)
    page.click("#intro-example")
    wait_ready(page)
    expect(page.locator("#text")).to_have_value(example)
    expect(page.locator('canvas.head[data-kind="encoder"]')).to_have_count(72)
    expect(intro).to_be_hidden()
