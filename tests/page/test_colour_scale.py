"""A causal head's colours in real Chromium: the first row (one visible key, weight 1) does not set the scale; the
largest weight of the other rows does, on the thumbnail and in the detail view, as the server's compact scale."""

from urllib.parse import urlencode

import numpy as np
import pytest

pytestmark = pytest.mark.browser

TEXT = "k#9Qz.m>Ab k#9Qz.m>Ab"

PIXELS = """([kind, layer, head]) => {
  const c = document.querySelector(`canvas.head[data-kind="${kind}"][data-layer="${layer}"][data-head="${head}"]`);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  return { w: c.width, h: c.height, rgba: Array.from(d) };
}"""


def wait(page, condition):
    for _ in range(600):
        if page.evaluate(f"() => {condition}"):
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"never true: {condition}")


def test_a_causal_heads_scale_is_the_largest_weight_of_the_rows_with_a_choice(page, client):
    exact = np.asarray(client.post("/api/attention", json={"text": TEXT, "model": "induction"}).json()["attention"]["decoder"])
    page.goto(f"{page.base_url}/?{urlencode({'text': TEXT, 'model': 'induction'})}")
    wait(page, "document.body.dataset.state === 'ready'")
    choices = exact[:, :, 1:].max(axis=(-2, -1))  # (L, H)
    layer, head = map(int, np.unravel_index(np.argmin(choices), choices.shape))  # the head the old scale hurt most
    m = exact[layer, head]  # (T, T)
    choice = m[1:].max()
    assert choice < 0.9  # else the test shows nothing
    px = page.evaluate(PIXELS, ["decoder", layer, head])
    T = m.shape[0]
    assert (px["w"], px["h"]) == (T, T)
    rgba = np.asarray(px["rgba"]).reshape(T, T, 4)
    i, j = np.unravel_index(np.argmax(m[1:]), m[1:].shape)
    # the brightest cell of the rows with a choice is drawn at full colour, the same as the first row's 1
    assert (rgba[1 + i, j] == rgba[0, 0]).all()
    page.locator(f'canvas.head[data-kind="decoder"][data-layer="{layer}"][data-head="{head}"]').click()
    wait(page, "document.querySelector('#detail').open && document.querySelector('#detail-note').textContent.includes('rows')")
    note = page.inner_text("#detail-note")
    assert "rows with a choice" in note and f"{choice:.3f}" in note, note
