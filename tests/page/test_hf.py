"""Hugging Face checkpoints in the page: every kind's grid drawn from the answer's layout, a causal
LM's continuation marked, an encoder–decoder's output and step slider, words by the tokenizer's ids."""

from urllib.parse import urlencode

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.conftest import checkpoint_server, watched_page
from tests.models.test_hf import TEXT

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def hf_server(tmp_path_factory):
    with checkpoint_server(tmp_path_factory.mktemp("page-checkpoints"), ("gpt2", "bart", "bert")) as server:
        yield server


@pytest.fixture
def hf_page(browser, hf_server):
    with watched_page(browser, hf_server) as page:
        yield page


def open_ready(page, server, **params):
    page.goto(f"{server.url}/?{urlencode(params)}")
    page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=60_000)


def test_a_causal_lm_draws_one_causal_grid_and_marks_its_continuation(hf_page, hf_server):
    model = hf_server.models["tiny-gpt2"]
    open_ready(hf_page, hf_server, model="tiny-gpt2", text=TEXT, gen=3)
    expect(hf_page.locator("#gen-what")).to_have_text("continue by")
    expect(hf_page.locator('canvas.head[data-kind="decoder"]')).to_have_count(model.info.layers * model.info.heads)
    title = hf_page.locator(".kind-grid h3").all_text_contents()
    assert title == ["decoder attention (queries and keys: input tokens; causal: each query sees only earlier keys)"]
    analysis = model.analyze(TEXT, new_tokens=3)
    expect(hf_page.locator("#output-text span.generated")).to_have_count(3)
    assert hf_page.locator("#output-text span").all_text_contents() == analysis.tokens
    hf_page.click('canvas.head[data-kind="decoder"][data-layer="1"][data-head="2"]')
    hf_page.wait_for_selector("#heatmap .xtick text")
    z = np.asarray(hf_page.evaluate("document.getElementById('heatmap').data[0].z"))
    assert z.shape == (len(analysis.tokens),) * 2
    assert (z[np.triu_indices_from(z, 1)] == 0).all()  # causal: nothing above the diagonal
    np.testing.assert_allclose(z, analysis.patterns["decoder"][1, 2].numpy(), atol=z.max() / 510 + 1e-6)
    ticks = hf_page.locator("#heatmap .xtick text").all_text_contents()
    assert sum(t.startswith("▹") for t in ticks) == 3  # the generated tokens, marked on the axes


def test_an_encoder_decoder_shows_its_output_and_three_grids(hf_page, hf_server):
    model = hf_server.models["tiny-bart"]
    open_ready(hf_page, hf_server, model="tiny-bart", text=TEXT, gen=5)
    expect(hf_page.locator("#gen-what")).to_have_text("output up to")
    analysis = model.analyze(TEXT, new_tokens=5)
    for kind in ("encoder", "decoder", "cross"):
        L = analysis.patterns[kind].shape[0]
        expect(hf_page.locator(f'canvas.head[data-kind="{kind}"]')).to_have_count(L * model.info.heads)
    expect(hf_page.locator("#step-control")).to_be_visible()
    assert hf_page.locator("#output-text span").count() == len(analysis.output_tokens) - 1


def test_words_merge_by_the_tokenizers_word_ids(hf_page, hf_server):
    model = hf_server.models["tiny-bert"]
    text = "Dogs bark at night, loudly!"
    analysis = model.analyze(text)
    words = [w for w in dict.fromkeys(analysis.words) if w is not None]
    open_ready(hf_page, hf_server, model="tiny-bert", text=text, words=1, nospecial=1, layer=0, head=0, kind="encoder")
    hf_page.wait_for_selector("#heatmap .xtick text")
    labels = hf_page.locator("#heatmap .xtick text").all_text_contents()
    spans = {w: [o for o, ww in zip(analysis.offsets, analysis.words, strict=True) if ww == w] for w in words}
    assert labels == [text[spans[w][0][0]:spans[w][-1][1]] for w in words]
    assert len(words) < sum(not s for s in analysis.special)  # pieces were merged
