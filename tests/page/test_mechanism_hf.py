"""The Mechanism tab on transformers checkpoints in real Chromium: Llama's steps (q and k after rotary
embeddings, key/value heads shared in groups) and T5's (its relative position bias drawn as a step, its scale
of 1), the weights drawn equal to the model's pattern row."""

from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect

from tests.conftest import checkpoint_server, watched_page
from tests.page.test_mechanism import plot_z, shape_text, wait_drawn

pytestmark = pytest.mark.browser

TEXT = "The cat sat on the mat."


@pytest.fixture(scope="module")
def hf_server(tmp_path_factory):
    with checkpoint_server(tmp_path_factory.mktemp("mechanism-checkpoints"), ("llama", "t5")) as server:
        yield server


@pytest.fixture
def hf_page(browser, hf_server):
    with watched_page(browser, hf_server) as page:
        yield page


def test_llama_steps_say_rotary_and_shared_key_value_heads(hf_page, hf_server):
    hf_page.goto(f"{hf_page.base_url}/?{urlencode({'tab': 'mechanism', 'text': TEXT, 'model': 'tiny-llama', 'kind': 'decoder', 'layer': 1, 'head': 3, 'query': 4})}")
    wait_drawn(hf_page, "decoder 1 3 4")
    steps = hf_page.locator("figure.mech-step").evaluate_all("fs => fs.map(f => f.dataset.step)")
    assert steps == ["x", "q", "k", "qk", "scores", "weights", "v", "z", "heads_z", "output"]
    expect(hf_page.locator('figure[data-step="q"] strong')).to_contain_text("rotated by position (RoPE)")
    expect(hf_page.locator('figure[data-step="k"] strong')).to_contain_text("key/value head 1, shared by query heads 2, 3")
    for step in ("q", "k", "v", "output"):  # Llama has no projection biases: none is named
        assert "+ b_" not in hf_page.locator(f'figure[data-step="{step}"] strong').text_content()
    expect(hf_page.locator("#mech-status")).to_contain_text("grouped-query attention")
    assert shape_text(hf_page, "k").endswith("of key [1, 2, 8, 8] (batch, kv_head, key_pos, d_head); after the rotary position embedding")
    analysis = hf_server.models["tiny-llama"].analyze(TEXT)
    assert plot_z(hf_page, "weights")[0] == pytest.approx(analysis.patterns["decoder"][1, 3, 4].tolist(), abs=1e-6)


def test_t5_draws_its_position_bias_and_its_scale(hf_page, hf_server):
    hf_page.goto(f"{hf_page.base_url}/?{urlencode({'tab': 'mechanism', 'text': TEXT, 'model': 'tiny-t5', 'kind': 'encoder', 'layer': 1, 'head': 2, 'query': 1})}")
    wait_drawn(hf_page, "encoder 1 2 1")
    steps = hf_page.locator("figure.mech-step").evaluate_all("fs => fs.map(f => f.dataset.step)")
    assert "position_bias" in steps and steps.index("position_bias") < steps.index("scores")
    expect(hf_page.locator('figure[data-step="scores"] strong')).to_contain_text("× 1 + position bias")
    expect(hf_page.locator("#mech-status")).to_contain_text("scale = 1.0000")
    analysis = hf_server.models["tiny-t5"].analyze(TEXT)
    assert plot_z(hf_page, "weights")[0] == pytest.approx(analysis.patterns["encoder"][1, 2, 1].tolist(), abs=1e-6)
