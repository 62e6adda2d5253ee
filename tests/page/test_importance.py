"""The Importance tab in real Chromium: a streamed run on the induction model (fast: 17 evaluations) draws
one layer x head map per kind and the pruning curve with exactly the API's numbers; errors are shown."""

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def open_importance(page, model):
    page.goto(f"{page.base_url}/?tab=importance&model={model}")
    page.wait_for_function("() => document.body.dataset.state === 'idle'", timeout=60_000)


def test_a_run_draws_the_map_and_the_curve_with_the_apis_numbers(page, client):
    open_importance(page, "induction")
    expect(page.locator("#imp-measure")).to_contain_text("Press Measure")
    page.click("#imp-run")
    page.wait_for_function("() => document.body.dataset.importance === 'done'", timeout=120_000)
    api = client.post("/api/importance", json={"model": "induction"}).json()
    maps = page.locator("#imp-maps .imp-map")
    expect(maps).to_have_count(1)
    assert maps.first.get_attribute("data-kind") == "decoder"
    z = page.evaluate("document.querySelector('#imp-maps [data-kind=\"decoder\"]').data[0].z")
    assert z == api["importance"]["decoder"]
    assert page.locator("#imp-maps .imp-map .hm").count() == 1  # Plotly drew the heatmap
    curve = page.evaluate("document.getElementById('imp-curve').data[0]")
    assert curve["y"] == api["curve"]["quality"] and curve["x"] == list(range(9))
    assert page.locator("#imp-curve .scatterlayer .trace").count() == 1
    assert page.get_attribute("#imp-progress", "value") == page.get_attribute("#imp-progress", "max") == "17"
    expect(page.locator("#imp-status")).to_have_text("17 evaluations of repeated_half_loss on 100 examples.")
    expect(page.locator("#imp-measure")).to_contain_text("repeated_half_loss (lower is better, nats per token)")
    assert page.get_attribute("#imp-maps", "data-model") == "induction"


def test_an_error_is_shown_in_words(page):
    open_importance(page, "induction")
    page.click("#tab-importance details summary")
    page.fill("#imp-texts", "fine\n" + "x" * 200)
    page.click("#imp-run")
    page.wait_for_function("() => document.body.dataset.importance === 'error'", timeout=60_000)
    expect(page.locator("#imp-status")).to_have_text("422: text 1 has 201 tokens but induction takes at most 128")
    assert page.console_errors == ["Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"]
    page.console_errors.clear()


def test_the_metric_span_reaches_the_request_and_the_url(page, client):
    import time
    from urllib.parse import parse_qs, urlparse

    open_importance(page, "minilm")  # an encoder: no metric choice
    assert page.locator("#imp-metric-controls").is_hidden()
    open_importance(page, "induction")
    expect(page.locator("#imp-metric-controls")).to_be_visible()
    page.select_option("#imp-metric", "loss")
    expect(page.locator("#imp-answer")).to_be_hidden()
    page.fill("#imp-span-start", "22")
    page.fill("#imp-span-end", "41")
    page.click("#imp-run")
    end = time.monotonic() + 120
    while page.evaluate("() => document.body.dataset.importance") != "done":
        assert page.evaluate("() => document.body.dataset.importance") != "error", page.inner_text("#imp-status")
        assert time.monotonic() < end
        time.sleep(0.2)
    sent = page.evaluate("() => JSON.parse(document.body.dataset.importanceRequest)")
    assert sent["metric"] == "loss" and sent["span"] == [22, 41]
    query = parse_qs(urlparse(page.url).query)
    assert query["imp_metric"] == ["loss"] and query["imp_start"] == ["22"] and query["imp_end"] == ["41"]
    api = client.post("/api/importance", json={"model": "induction", "metric": "loss", "span": [22, 41]}).json()
    assert page.evaluate("document.querySelector('#imp-maps [data-kind=\"decoder\"]').data[0].z") == api["importance"]["decoder"]
    expect(page.locator("#imp-measure")).to_contain_text("loss (lower is better, nats per token)")
    page.goto(page.url)  # the URL brings the choice back
    page.wait_for_function("() => document.body.dataset.state === 'idle'", timeout=60_000)
    assert page.input_value("#imp-metric") == "loss" and page.input_value("#imp-span-start") == "22"
