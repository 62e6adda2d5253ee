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
