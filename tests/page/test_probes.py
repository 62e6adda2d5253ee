"""The Probes tab in real Chromium: the example set runs, the heatmap holds every head's accuracy, the table
lists the best heads under the baseline, and a bad line is named."""

import json

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.analyses.test_probes import DET_NOUN, OBJ_VERB

pytestmark = pytest.mark.browser


def open_tab(page):
    page.goto(f"{page.base_url}/?tab=probes")
    expect(page.locator("#probe-run")).to_be_enabled(timeout=30_000)


def run(page):
    page.click("#probe-run")
    page.wait_for_function("() => ['ready', 'error'].includes(document.getElementById('probe-plots').dataset.state)",
                           timeout=120_000)


def test_the_example_set_shows_a_heatmap_and_the_best_heads_beside_the_baseline(page, client):
    open_tab(page)
    assert page.input_value("#probe-pairs") == DET_NOUN.read_text()  # the first example, filled in
    run(page)
    expected = client.post("/api/probe", json={"pairs": DET_NOUN.read_text()}).json()
    base = expected["baseline"]
    expect(page.locator("#probe-baseline")).to_have_text(
        f"Baseline: always the word at offset +{base['offset']} from the from-word, right on {base['correct']} of 45 "
        f"pairs ({base['accuracy']:.3f}).")
    z = page.evaluate("() => document.querySelector('#probe-plots .plot[data-kind=\"encoder\"]').data[0].z")
    np.testing.assert_allclose(np.array(z), expected["kinds"]["encoder"]["accuracy"], rtol=1e-6)  # float32 in the page
    rows = page.locator("#probe-table tbody tr")
    expect(rows).to_have_count(11)
    assert rows.first.get_attribute("data-baseline") == str(base["offset"])
    best = expected["best"][0]
    cells = rows.nth(1).locator("td").all_text_contents()
    assert cells == [best["name"], "encoder", f"{best['correct']}/45", f"{best['accuracy']:.3f}",
                     f"+{best['above_baseline']:.3f}"]
    assert page.locator("#probe-table tbody tr[data-head]").evaluate_all(
        "rs => rs.map(r => r.dataset.head)") == [h["name"] for h in expected["best"]]
    expect(page.locator("#probe-status")).to_contain_text(f"best head {best['name']}")
    expect(page.locator("#probe-skipped")).to_be_hidden()


def test_another_example_and_model_and_a_bad_line(page, client):
    open_tab(page)
    page.select_option("#probe-example", "obj_verb")
    page.click("#probe-use-example")
    assert page.input_value("#probe-pairs") == OBJ_VERB.read_text()
    page.select_option("#model", "dates")
    run(page)
    expected = client.post("/api/probe", json={"pairs": OBJ_VERB.read_text(), "model": "dates"}).json()
    assert page.locator("#probe-table tbody tr[data-head]").first.get_attribute("data-head") == expected["best"][0]["name"]
    expect(page.locator("#probe-status")).to_contain_text("dates: ")

    bad = json.dumps({"sentence": "<b>x</b> y", "from": "x", "to": "<i>"})  # user text shown as text, not markup
    page.fill("#probe-pairs", f"{bad}\n\n{bad}\n")
    run(page)
    expect(page.locator("#probe-status")).to_have_text(
        '422: line 1: to "<i>" is not a whole word of the sentence; line 3: to "<i>" is not a whole word of the sentence')
    expect(page.locator("#probe-table tbody tr")).to_have_count(0)  # the old result is gone
    assert page.console_errors == ["Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"]
    page.console_errors.clear()


def test_phone_width_keeps_the_tab_within_the_screen(browser, live_server):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.base_url = live_server.url
    open_tab(page)
    run(page)
    expect(page.locator("#probe-table tbody tr")).to_have_count(11)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # the table scrolls in its own box
    context.close()


def test_a_causal_model_says_why_pairs_pointing_forward_score_zero(page, client):
    open_tab(page)
    page.select_option("#model", "induction")
    run(page)
    expected = client.post("/api/probe", json={"pairs": DET_NOUN.read_text(), "model": "induction"}).json()
    notes = [k["note"] for k in expected["kinds"].values() if k["note"]]
    assert notes  # determiner -> noun points forward: a causal head cannot look there
    expect(page.locator("#probe-notes")).to_be_visible()
    expect(page.locator("#probe-notes")).to_have_text(" ".join(notes))
    page.select_option("#model", "minilm")
    run(page)
    expect(page.locator("#probe-notes")).to_be_hidden()
