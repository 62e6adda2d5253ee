"""The dates model in the browser: its output, three grids with the right axes, the step slider."""

from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

TEXT = "Wednesday, the 25th of November 2026"
SHOWN = TEXT.replace(" ", "␣")  # a space token is drawn as a visible sign


def ticks(page, axis):
    return page.locator(f"#heatmap .{axis}tick text").all_text_contents()


def test_dates_model_from_the_picker_shows_output_and_three_grids(page):
    page.goto(page.base_url)
    page.select_option("#model", "dates")
    page.fill("#text", TEXT)
    page.click("#analyze")
    page.wait_for_function("() => document.body.dataset.state === 'ready'")
    expect(page.locator("#output-text")).to_have_text("2026-11-25")
    for kind in ("encoder", "decoder", "cross"):
        expect(page.locator(f'canvas.head[data-kind="{kind}"]')).to_have_count(12)
    titles = page.locator(".kind-grid h3").all_text_contents()
    assert titles == [  # drawn from the answer's layout, not from the kind's name
        "encoder attention (queries and keys: input tokens)",
        "decoder attention (queries and keys: output positions; causal: each query sees only earlier keys)",
        "cross attention (queries: output positions, keys: input tokens)",
    ]
    assert "model=dates" in page.url


@pytest.mark.parametrize("kind,rows,cols", [
    ("encoder", ["<s>", *SHOWN, "</s>"], ["<s>", *SHOWN, "</s>"]),
    ("decoder", ["<s>", *"2026-11-25"], ["<s>", *"2026-11-25"]),
    ("cross", ["<s>", *"2026-11-25"], ["<s>", *SHOWN, "</s>"]),
])
def test_detail_axes_come_from_the_right_token_lists(page, kind, rows, cols):
    page.goto(f"{page.base_url}/?{urlencode({'text': TEXT, 'model': 'dates', 'kind': kind, 'layer': 1, 'head': 2})}")
    page.wait_for_selector("#heatmap .xtick text")
    expect(page.locator("#detail-title")).to_have_text(f"L1H2 · {kind}")
    assert ticks(page, "y") == rows
    assert ticks(page, "x") == cols


def cross_pixels(page):
    return page.evaluate("""() => [...document.querySelectorAll('canvas.head[data-kind="cross"]')].map(c =>
        Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data))""")


def test_step_slider_walks_through_generation(page):
    page.goto(f"{page.base_url}/?{urlencode({'text': TEXT, 'model': 'dates'})}")
    page.wait_for_function("() => document.body.dataset.state === 'ready'")
    rows = ["<s>", *"2026-11-25"]
    assert page.input_value("#step") == str(len(rows))  # starts at the end of generation
    before = cross_pixels(page)

    def set_step(value):
        page.evaluate("s => { const e = document.getElementById('step'); e.value = s; e.dispatchEvent(new Event('input')); }", value)

    set_step(3)
    expect(page.locator("#step-label")).to_have_text("3/11: row 2 (0) produced 2")
    expect(page.locator("#output-text .current")).to_have_text("2")
    assert "step=3" in page.url
    after = cross_pixels(page)
    assert all(a != b for a, b in zip(before, after, strict=True))  # every cross-attention head repainted
    # only row 2 keeps full strength: every other row of every head is faded
    widths = page.evaluate("[...document.querySelectorAll('canvas.head[data-kind=\"cross\"]')].map(c => c.width)")
    for pixels, width in zip(after, widths, strict=True):
        for r in range(len(rows)):
            row = pixels[r * width * 4:(r + 1) * width * 4]
            reds = row[0::4]
            if r != 2:
                assert min(reds) >= 190, r  # faded to the light end of the scale
    # the detail view of a cross head marks the same row
    page.click('canvas.head[data-kind="cross"][data-layer="0"][data-head="0"]')
    page.wait_for_selector("#heatmap .xtick text")
    assert page.evaluate("document.getElementById('heatmap').layout.shapes[0].y0") == pytest.approx(1.5)
    page.keyboard.press("Escape")
    set_step(11)
    expect(page.locator("#step-label")).to_have_text("11/11: row 10 (5) produced </s>")


def test_an_impossible_date_is_flagged_and_each_character_has_its_probability(page, client):
    page.goto(f"{page.base_url}/?model=dates&text=31%2F02%2F2024")
    page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=60_000)
    expect(page.locator("#output-valid")).to_have_text("not a valid date")
    body = client.post("/api/attention", json={"text": "31/02/2024", "model": "dates"}).json()
    shown = page.locator("#output-text span").evaluate_all("s => s.map(x => +x.dataset.prob)")
    assert shown == pytest.approx(body["output_probs"][: len(shown)], abs=1e-4)
    page.goto(f"{page.base_url}/?model=dates&text=1+May+2000")
    page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=60_000)
    expect(page.locator("#output-valid")).to_have_text("valid date")


def test_a_hyphen_token_reads_as_one_hyphen(page):
    """Tick marks beside the labels made the output token "-" read "- -": the axes draw none."""
    page.goto(f"{page.base_url}/?model=dates&text=25+Nov+2026&kind=cross&layer=1&head=0")
    page.wait_for_selector("#heatmap .ytick text")
    assert "-" in page.locator("#heatmap .ytick text").all_text_contents()
    assert page.locator("#heatmap path.ticks").count() == 0
