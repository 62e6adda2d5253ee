"""The page's "show: value norms" selector and "rollout" toggle in real Chromium: the grid is painted with the
answer's value norms (each thumbnail's pixels are the sequential colour of norm / head maximum), the labels
say what is shown, the rollout is drawn per kind the answer gives, and the choice lives in the URL."""

from urllib.parse import urlencode

import numpy as np
import pytest
from playwright.sync_api import expect

from headscope.analyses.rollout import rollouts
from headscope.analyses.value_norm import value_norms

pytestmark = pytest.mark.browser

SENTENCE = "The keys to the cabinet are on the table."


def wait_ready(page):
    page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=60_000)


def lut(page) -> np.ndarray:
    """The page's own colour table: 256 x (r, g, b)."""
    packed = page.evaluate("async () => Array.from((await import('/static/js/lib/colors.js')).SEQUENTIAL_LUT)")
    packed = np.asarray(packed, dtype=np.uint32)
    return np.stack([packed & 255, (packed >> 8) & 255, (packed >> 16) & 255], axis=1).astype(int)


def thumbnail(page, layer, head) -> np.ndarray:
    data = page.evaluate(f"""() => {{ const c = document.querySelector('canvas.head[data-kind="encoder"][data-layer="{layer}"][data-head="{head}"]');
        return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)]; }}""")
    w, h, pixels = data
    return np.asarray(pixels).reshape(h, w, 4)[..., :3]


def levels(page, pixels: np.ndarray) -> np.ndarray:
    """Each pixel's level 0..255 on the page's colour scale (the nearest colour of its table)."""
    table = lut(page)
    distance = ((pixels[..., None, :] - table[None, None]) ** 2).sum(-1)  # (h, w, 256)
    return distance.argmin(-1)


def test_value_norms_paint_the_grid_with_the_answers_values(page, minilm):
    page.goto(f"{page.base_url}/?{urlencode({'text': SENTENCE, 'model': 'minilm', 'weights': 'value_norm'})}")
    wait_ready(page)
    assert page.input_value("#opt-weights") == "value_norm"
    label = page.locator("#weights-label")
    expect(label).to_have_attribute("data-weights", "value_norm")
    assert "not probabilities" in label.text_content()
    analysis, norms = value_norms(minilm, SENTENCE)
    for layer, head in ((2, 5), (0, 3), (5, 11)):
        norm = norms["encoder"][layer, head].numpy()
        expected = np.rint(norm / norm.max() * 255)
        painted = levels(page, thumbnail(page, layer, head))
        assert painted.shape == norm.shape
        assert np.abs(painted - expected).max() <= 1, (layer, head)
    # ... and not the attention weights: those would paint differently
    pattern = analysis.patterns["encoder"][2, 5].numpy()
    assert np.abs(levels(page, thumbnail(page, 2, 5)) - np.rint(pattern / pattern.max() * 255)).max() > 10


def test_the_selector_and_rollout_toggle_are_written_to_the_url_and_restored(page, minilm):
    page.goto(f"{page.base_url}/?{urlencode({'text': SENTENCE, 'model': 'minilm'})}")
    wait_ready(page)
    expect(page.locator("#rollout")).to_be_hidden()
    assert page.locator("#weights-label").get_attribute("data-weights") == "attention"
    page.select_option("#opt-weights", "value_norm")
    page.wait_for_function("() => document.querySelector('#weights-label').dataset.weights === 'value_norm'")
    page.check("#opt-rollout")
    page.wait_for_selector('section.rollout[data-kind="encoder"] canvas.rollout-map')
    assert "weights=value_norm" in page.url and "rollout=1" in page.url
    page.goto(page.url)  # the shared link
    wait_ready(page)
    assert page.input_value("#opt-weights") == "value_norm" and page.is_checked("#opt-rollout")
    canvas = page.locator('section.rollout[data-kind="encoder"] canvas.rollout-map')
    expect(canvas).to_be_visible()
    expected = rollouts(*(lambda a: (a.patterns, a.layout))(minilm.analyze(SENTENCE)))["encoder"]
    assert float(canvas.get_attribute("data-max")) == pytest.approx(float(expected.max()), abs=1e-6)


def test_rollout_of_an_encoder_decoder_names_the_kind_without_one(page):
    page.goto(f"{page.base_url}/?{urlencode({'text': '2 March 1999', 'model': 'dates', 'rollout': '1'})}")
    wait_ready(page)
    kinds = page.locator("section.rollout").evaluate_all("s => s.map(x => x.dataset.kind)")
    assert kinds == ["encoder", "decoder"]
    text = page.locator("#rollout").text_content()
    assert "cross: no rollout" in text and "through cross is not counted" in text


def test_an_opened_head_says_it_shows_value_norms(page):
    page.goto(f"{page.base_url}/?{urlencode({'text': SENTENCE, 'model': 'minilm', 'weights': 'value_norm', 'layer': 1, 'head': 4})}")
    page.wait_for_selector("#heatmap .xtick text")
    note = page.locator("#detail-note").text_content()
    assert "value norm" in note and "rows do not sum to 1" in note
    assert "value norm" in page.locator("#heatmap .cbtitle").text_content()


def test_hiding_special_tokens_drops_value_norm_columns_without_rescaling_rows(page, minilm):
    page.goto(f"{page.base_url}/?{urlencode({'text': SENTENCE, 'model': 'minilm', 'weights': 'value_norm', 'nospecial': '1'})}")
    wait_ready(page)
    expect(page.locator("#transform-label")).to_contain_text("not probabilities, so rows are not rescaled")
    _, norms = value_norms(minilm, SENTENCE)
    norm = norms["encoder"][3, 2].numpy()[1:-1, 1:-1]  # [CLS] and [SEP] rows and columns dropped, nothing rescaled
    painted = levels(page, thumbnail(page, 3, 2))
    assert painted.shape == norm.shape
    head_max = norms["encoder"][3, 2].numpy().max()  # the 8-bit steps are of the whole head's maximum
    step = 255 * (head_max / 255) / norm.max()  # one 8-bit step of the answer, in levels of this view
    assert np.abs(painted - np.rint(norm / norm.max() * 255)).max() <= step + 1
