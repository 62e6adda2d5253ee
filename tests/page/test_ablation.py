"""Ablate mode in real Chromium: clicking a grid head knocks it out, the URL keeps the set, a reload restores
it, and the effect panel shows the API's own numbers."""

from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

SENTENCE = "The keys to the cabinet are on the table."
TOLERANCE = 1e-5  # the page shows the numbers the API sent; a second run of the same pass may sum in another order


def wait_ready(page):
    page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=60_000)


def wait_effect(page):
    page.wait_for_function("() => document.body.dataset.state === 'ready' && !document.querySelector('#effect').hidden",
                           timeout=60_000)


def shown(page, measure):
    """The exact values the effect panel holds for one measure, in order."""
    return [float(v) for v in page.eval_on_selector_all(
        f'#effect [data-measure="{measure}"] [data-value], #effect td[data-measure="{measure}"]',
        "cells => cells.map(c => c.dataset.value)")]


def test_clicking_a_head_in_ablate_mode_knocks_it_out_and_shows_the_api_effect(page, client):
    page.goto(f"{page.base_url}/?{urlencode({'text': SENTENCE, 'model': 'minilm'})}")
    wait_ready(page)
    expect(page.locator("#effect")).to_be_hidden()
    page.check("#opt-ablate")
    head = page.locator('canvas.head[data-kind="encoder"][data-layer="2"][data-head="5"]')
    head.click()
    wait_effect(page)
    expect(head).to_have_attribute("data-ablated", "1")
    assert page.locator("canvas.head[data-ablated]").count() == 1
    assert parse_qs(urlparse(page.url).query)["ablate"] == ["encoder:2:5"]
    expect(page.locator("dialog#detail")).not_to_be_visible()  # ablate mode does not open the head

    api = client.post("/api/attention", json={"text": SENTENCE, "model": "minilm",
                                              "ablate": [{"kind": "encoder", "layer": 2, "head": 5}]}).json()["effect"]
    assert shown(page, "embedding_cosine") == pytest.approx([api["embedding_cosine"]], abs=TOLERANCE)
    assert shown(page, "token_cosine") == pytest.approx(api["token_cosine"], abs=TOLERANCE)
    rows = page.locator('#effect table[data-axis="tokens"] tbody tr')
    expect(rows).to_have_count(len(api["token_cosine"]))
    expect(rows.nth(1).locator("td").nth(1)).to_have_text("the")

    page.reload()  # the set comes back from the URL, marked, with its effect
    wait_effect(page)
    expect(page.locator('canvas.head[data-ablated]')).to_have_count(1)
    assert page.locator("canvas.head[data-ablated]").get_attribute("data-name") == "L2H5"
    assert shown(page, "embedding_cosine") == pytest.approx([api["embedding_cosine"]], abs=TOLERANCE)

    page.check("#opt-ablate")
    head.click()  # clicking it again brings it back: no ablation, no effect
    wait_ready(page)
    expect(page.locator("#effect")).to_be_hidden()
    assert "ablate" not in parse_qs(urlparse(page.url).query)


def test_mean_ablation_of_the_dates_model_from_the_url_shows_the_regenerated_output_and_logprobs(page, client):
    text = "25 May 2001"
    heads = [{"kind": "cross", "layer": 0, "head": 1}, {"kind": "decoder", "layer": 1, "head": 2}]
    page.goto(f"{page.base_url}/?{urlencode({'text': text, 'model': 'dates', 'ablate': 'cross:0:1,decoder:1:2', 'ablation': 'mean'})}")
    wait_effect(page)
    assert page.locator("#ablation-mode").input_value() == "mean"
    expect(page.locator("canvas.head[data-ablated]")).to_have_count(2)
    api = client.post("/api/attention", json={"text": text, "model": "dates", "ablate": heads,
                                              "ablation": "mean"}).json()
    effect = api["effect"]
    expect(page.locator('#effect [data-measure="output_text"] [data-value]')).to_have_text(effect["output_text"])
    expect(page.locator('#effect [data-measure="output_text"]')).to_contain_text(f"un-ablated: {api['output_text']}")
    assert shown(page, "logprob_before") == pytest.approx(effect["logprob_before"], abs=TOLERANCE)
    assert shown(page, "logprob_after") == pytest.approx(effect["logprob_after"], abs=TOLERANCE)
    assert shown(page, "loss_change") == pytest.approx([effect["loss_change"]], abs=TOLERANCE)
    table = page.locator('#effect table[data-axis="output_tokens"] tbody tr')
    expect(table).to_have_count(len(api["output_tokens"]))
    expect(page.locator("#effect-heads")).to_contain_text("cross L0H1")


def test_a_link_with_a_head_the_model_lacks_says_so_and_can_be_cleared(page):
    page.goto(f"{page.base_url}/?{urlencode({'text': SENTENCE, 'model': 'minilm', 'ablate': 'encoder:9:0'})}")
    page.wait_for_function("() => document.body.dataset.state === 'error'", timeout=60_000)
    expect(page.locator("#status")).to_contain_text("layer 9 of encoder is out of range 0..5")
    expect(page.locator("#effect-heads")).to_contain_text("Cannot ablate encoder:9:0")
    page.click("#ablate-clear")
    wait_ready(page)
    expect(page.locator("#effect")).to_be_hidden()
    assert "ablate" not in parse_qs(urlparse(page.url).query)
    expect(page.locator("canvas.head")).to_have_count(72)
    assert page.console_errors == ["Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"]
    page.console_errors.clear()


INDUCTION = "k#9Qz.m>Ab k#9Qz.m>A"


def shown_metric(page):
    line = page.locator('#effect [data-measure="metric"]')
    return (float(line.get_attribute("data-before")), float(line.get_attribute("data-after")),
            float(line.locator("[data-value]").get_attribute("data-value")), line.inner_text())


def test_the_effect_scores_the_metric_the_link_names_and_a_new_choice_reruns_into_the_url(page, client):
    heads = [{"kind": "decoder", "layer": 1, "head": 1}]
    query = {"text": INDUCTION, "model": "induction", "ablate": "decoder:1:1", "ab_metric": "logit_diff",
             "ab_answer": "b", "ab_wrong": "Y"}
    page.goto(f"{page.base_url}/?{urlencode(query)}")
    wait_effect(page)
    expect(page.locator("#ablate-metric-controls")).to_be_visible()
    assert page.input_value("#ablate-metric") == "logit_diff" and page.input_value("#ablate-answer") == "b"
    expect(page.locator("#ablate-span-start")).to_be_hidden()  # logit_diff reads no span
    api = client.post("/api/attention", json={"text": INDUCTION, "model": "induction", "ablate": heads,
                                              "metric": "logit_diff", "answer": "b", "wrong": "Y"}).json()["effect"]
    before, after, change, words = shown_metric(page)
    assert (before, after, change) == pytest.approx((api["metric"]["before"], api["metric"]["after"],
                                                     api["metric"]["change"]), abs=TOLERANCE)
    assert '"b"' in words and '"Y"' in words and api["metric"]["units"] in words

    page.select_option("#ablate-metric", "loss")  # a new choice: the span's boxes, the effect again, the URL
    page.fill("#ablate-span-start", "12")
    page.fill("#ablate-span-end", "20")
    page.press("#ablate-span-end", "Enter")
    for _ in range(600):
        if page.evaluate("() => document.querySelector('#effect [data-measure=\"metric\"]')?.innerText.includes('[12, 20)')"):
            break
        page.wait_for_timeout(100)
    wait_effect(page)
    url = parse_qs(urlparse(page.url).query)
    assert url["ab_metric"] == ["loss"] and url["ab_span"] == ["12,20"] and "ab_answer" not in url
    api = client.post("/api/attention", json={"text": INDUCTION, "model": "induction", "ablate": heads,
                                              "metric": "loss", "span": [12, 20]}).json()["effect"]["metric"]
    assert shown_metric(page)[:3] == pytest.approx((api["before"], api["after"], api["change"]), abs=TOLERANCE)


def test_the_metric_choice_is_offered_only_for_models_that_take_one(page):
    page.goto(f"{page.base_url}/?{urlencode({'text': SENTENCE, 'model': 'minilm', 'ab_metric': 'prob'})}")
    wait_ready(page)
    expect(page.locator("#ablate-metric-controls")).to_be_hidden()
    page.check("#opt-ablate")
    page.locator('canvas.head[data-kind="encoder"][data-layer="2"][data-head="5"]').click()
    wait_effect(page)  # an encoder's effect, with no metric sent (an encoder has none)
    expect(page.locator('#effect [data-measure="metric"]')).to_have_count(0)
    expect(page.locator('#effect [data-measure="embedding_cosine"]')).to_have_count(1)


def test_the_effect_panel_scrolls_inside_itself_at_phone_width(page):
    page.set_viewport_size({"width": 390, "height": 800})
    query = {"text": INDUCTION, "model": "induction", "ablate": "decoder:1:1", "ab_metric": "logit_diff",
             "ab_answer": "b", "ab_wrong": "Y"}
    page.goto(f"{page.base_url}/?{urlencode(query)}")
    wait_effect(page)
    assert page.evaluate("() => document.scrollingElement.scrollWidth") <= 390
    assert page.evaluate("() => document.querySelector('#effect .effect-scroll').getBoundingClientRect().right") <= 390
