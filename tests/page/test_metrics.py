"""The page paints the weights first and fetches the per-head metrics next (POST /api/heads): in real
Chromium, with the metrics' answer held back until the grid is checked."""

import json

import pytest
from playwright.sync_api import expect

from headscope.analyses.heads import summarize_heads

pytestmark = pytest.mark.browser

SENTENCE = "The cat sat on the mat; the cat saw 1 1 2 dogs."


def test_the_grid_is_painted_before_the_metrics_arrive_and_the_roles_follow(page, minilm):
    held, posted = [], []
    page.on("request", lambda r: posted.append((r.url.split("/api/")[1], json.loads(r.post_data)))
            if "/api/" in r.url and r.method == "POST" else None)
    page.route("**/api/heads", lambda route: held.append(route))  # answered only when the test lets it through
    page.goto(f"{page.base_url}/?text={SENTENCE}&layer=0&head=2")
    page.wait_for_function("() => document.body.dataset.paintMs !== undefined", timeout=60_000)
    expect(page.locator("canvas.head")).to_have_count(72)
    expect(page.locator("#detail-title")).to_have_text("L0H2 · encoder")
    page.wait_for_function("() => document.body.dataset.state === 'loading'")  # the grid is up; metrics pending
    assert page.get_attribute('canvas.head[data-layer="0"][data-head="2"]', "title") == "L0H2"
    assert page.locator("#detail-roles .badge").count() == 0

    for _ in range(6000):  # Playwright runs the route handler while this thread waits in one of its calls
        if held:
            break
        page.wait_for_timeout(10)
    assert len(held) == 1, "the page never asked for the metrics"
    held[0].continue_()
    page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=60_000)
    expected = summarize_heads(minilm.analyze(SENTENCE))["encoder"]
    for record in expected[:24]:
        title = page.get_attribute(f'canvas.head[data-layer="{record["layer"]}"][data-head="{record["head"]}"]', "title")
        assert title == (f"{record['name']}: {', '.join(record['roles'])}" if record["roles"] else record["name"])
    assert "previous_token" in expected[2]["roles"]
    expect(page.locator("#detail-roles")).to_contain_text("previous_token")
    attention, heads = [body for path, body in posted if path == "attention"], [body for path, body in posted if path == "heads"]
    assert len(attention) == 1 and attention[0]["metrics"] is False and attention[0]["format"] == "compact"
    assert heads == [{"text": SENTENCE, "model": "minilm", "truncate": False}]  # the same request, once


def test_the_map_tab_shows_the_metrics_once_they_arrive(page):
    page.goto(f"{page.base_url}/?text={SENTENCE}&tab=map")
    page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=60_000)
    expect(page.locator("#map-metric option")).not_to_have_count(0)
