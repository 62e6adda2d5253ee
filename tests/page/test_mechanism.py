"""The Mechanism tab in real Chromium: every step drawn with its shape, the numbers equal the model's,
selectors and URL state, masked scores shown as masked, the way in from the detail dialog, hostile text."""

from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

TEXT = "The cat sat on the mat; the cat saw it."
DATE = "25 May 2001"
STEPS = ["x", "q", "k", "qk", "scores", "weights", "v", "z", "heads_z", "output"]


def open_mechanism(page, **params):
    page.goto(f"{page.base_url}/?{urlencode({'tab': 'mechanism', **params})}")
    wait_drawn(page)


def wait_drawn(page, explained=None):
    condition = "document.getElementById('mech-steps').dataset.state === 'ready'"
    if explained:
        condition += f" && document.getElementById('mech-steps').dataset.explained === '{explained}'"
    page.wait_for_function(f"() => {condition}", timeout=60_000)  # a function: the page's CSP forbids eval


def plot_z(page, step):
    return page.evaluate(f"document.querySelector('figure[data-step=\"{step}\"] .mech-plot').data[0].z")


def shape_text(page, step):
    return page.locator(f'figure[data-step="{step}"] .mech-shape').text_content()


def test_every_step_is_drawn_with_its_shape_and_the_models_numbers(page, minilm):
    open_mechanism(page, text=TEXT, model="minilm", kind="encoder", layer=2, head=5, query=3)
    assert page.locator("figure.mech-step").evaluate_all("fs => fs.map(f => f.dataset.step)") == STEPS
    analysis = minilm.analyze(TEXT)
    T = len(analysis.tokens)
    assert shape_text(page, "x") == (f"x [{T}, 384] (query_pos, d_model) = x[0] of x [1, {T}, 384] (batch, query_pos, d_model); "
                                     "the attention module's input")
    assert shape_text(page, "q") == (f"q [32] (d_head) = query[0, 5, 3] of query [1, 12, {T}, 32] "
                                     "(batch, head, query_pos, d_head)")
    assert shape_text(page, "k").startswith(f"k [{T}, 32] (key_pos, d_head)")
    assert shape_text(page, "heads_z").startswith("heads_z [384] (d_model)")
    weights = plot_z(page, "weights")[0]
    assert weights == pytest.approx(analysis.patterns["encoder"][2, 5, 3].tolist(), abs=1e-6)
    assert len(plot_z(page, "x")) == T and len(plot_z(page, "x")[0]) == 384
    assert len(plot_z(page, "qk")) == T and len(plot_z(page, "qk")[0]) == 32
    ticks = page.locator('figure[data-step="k"] .ytick text').all_text_contents()
    assert ticks == analysis.tokens  # every key token labels its row, repeated ones included
    assert [page.input_value(f"#mech-{s}") for s in ("kind", "layer", "head", "query")] == ["encoder", "2", "5", "3"]
    expect(page.locator("#mech-status")).to_contain_text("L2H5 · encoder · query 3 (sat)")
    expect(page.locator("#mech-status")).to_contain_text("D = C / H = 32")


def test_selectors_change_the_head_and_the_url(page, minilm):
    open_mechanism(page, text=TEXT, model="minilm", layer=0, head=0, query=1)
    page.select_option("#mech-head", "7")
    wait_drawn(page, "encoder 0 7 1")
    page.select_option("#mech-layer", "4")
    wait_drawn(page, "encoder 4 7 1")
    page.select_option("#mech-query", "2")
    wait_drawn(page, "encoder 4 7 2")
    for part in ("tab=mechanism", "kind=encoder", "layer=4", "head=7", "query=2"):
        assert part in page.url
    weights = plot_z(page, "weights")[0]
    assert weights == pytest.approx(minilm.analyze(TEXT).patterns["encoder"][4, 7, 2].tolist(), abs=1e-6)
    expect(page.locator("#detail")).not_to_be_visible()  # the URL's head is the tab's, not a dialog's


def test_masked_scores_are_shown_as_masked(page, dates):
    open_mechanism(page, text=DATE, model="dates", kind="decoder", layer=1, head=2, query=4)
    output_tokens = dates.analyze(DATE).output_tokens
    options = page.locator("#mech-query option").all_text_contents()
    assert options == [f"{i}: {t}" for i, t in enumerate(output_tokens)]  # rows of the decoder: output positions
    scores = plot_z(page, "scores")[0]
    masked = len(output_tokens) - 5
    assert scores[5:] == [None] * masked and None not in scores[:5]
    notes = page.evaluate("document.querySelector('figure[data-step=\"scores\"] .mech-plot').layout.annotations.map(a => a.text)")
    assert notes[5:] == ["−∞"] * masked
    expect(page.locator("#mech-status")).to_contain_text(f"{masked} of {len(output_tokens)} keys masked")
    page.select_option("#mech-kind", "cross")
    page.wait_for_function("() => document.getElementById('mech-steps').dataset.explained?.startsWith('cross')")
    wait_drawn(page)
    assert page.locator('figure[data-step="context"]').count() == 1
    assert None not in plot_z(page, "scores")[0]


def test_the_detail_dialog_opens_the_mechanism_of_its_head(page):
    page.goto(f"{page.base_url}/?{urlencode({'text': TEXT, 'model': 'minilm', 'layer': 3, 'head': 9})}")
    page.wait_for_selector("#heatmap .xtick text")
    page.click("#detail-mechanism")
    wait_drawn(page)
    expect(page.locator("#detail")).not_to_be_visible()
    expect(page.locator('#tabs [data-tab="mechanism"]')).to_have_attribute("aria-selected", "true")
    assert [page.input_value("#mech-layer"), page.input_value("#mech-head")] == ["3", "9"]
    assert "tab=mechanism" in page.url and "layer=3" in page.url and "head=9" in page.url


HOSTILE = '<img src=x onerror="window.__pwned=1"> & <b>b</b>'


def test_hostile_tokens_show_literally(page, minilm):
    open_mechanism(page, text=HOSTILE, model="minilm", query=1)
    assert page.evaluate("window.__pwned") is None
    assert page.locator('img[src="x"]').count() == 0 and page.locator("#mech-steps b").count() == 0
    tokens = minilm.analyze(HOSTILE).tokens
    assert page.locator("#mech-query option").all_text_contents() == [f"{i}: {t}" for i, t in enumerate(tokens)]
    assert page.locator('figure[data-step="k"] .ytick text').all_text_contents() == tokens
