"""The Playground tab in real Chromium: presets, the form, the code, the shapes torch reports, a heatmap
per head, and a clear message for a configuration PyTorch refuses."""

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def open_playground(page):
    page.goto(f"{page.base_url}/?tab=playground")
    wait_ready(page)


def wait_ready(page):
    page.wait_for_function("() => document.getElementById('pg-shapes').dataset.state === 'ready'", timeout=30_000)


def shape(page, name):
    return page.locator(f'#pg-shapes dd[data-name="{name}"]').text_content()


def set_field(page, name, value):
    page.fill(f"#pg-{name}", str(value))
    page.dispatch_event(f"#pg-{name}", "change")


def test_preset_then_num_heads_updates_shapes_and_heads(page):
    open_playground(page)
    assert page.locator("#pg-presets button").all_text_contents() == ["self-attention", "cross-attention", "causal"]
    assert shape(page, "attn_output") == "[10,2,64]"  # starts from the first preset
    page.click('[data-preset="causal"]')
    expect(page.locator('#pg-shapes dd[data-name="attn_output"]')).to_have_text("[6,4,32]")
    wait_ready(page)
    assert shape(page, "attn_weights") == "[4,4,6,6] (batch, head, query_pos, key_pos)"
    expect(page.locator(".pg-head")).to_have_count(4)
    set_field(page, "num_heads", 8)
    expect(page.locator('#pg-shapes dd[data-name="attn_weights"]')).to_have_text("[4,8,6,6] (batch, head, query_pos, key_pos)")
    wait_ready(page)
    heads = page.locator(".pg-head")
    expect(heads).to_have_count(8)
    assert heads.evaluate_all("hs => hs.map(h => h.dataset.head)") == [str(h) for h in range(8)]
    assert all(page.evaluate(f"document.querySelectorAll('.pg-head')[{h}].data[0].z.length") == 6 for h in range(8))
    expect(page.locator("#pg-code")).to_contain_text("nn.MultiheadAttention(embed_dim=32, num_heads=8)")
    expect(page.locator('#pg-shapes dd[data-name="max_abs_diff"]')).to_contain_text("against model.attention.MultiHeadAttention")
    assert float(shape(page, "max_abs_diff").split()[0]) < 1e-5


def test_averaged_weights_draw_one_map_and_options_add_keys(page):
    open_playground(page)
    page.click('[data-preset="cross-attention"]')
    expect(page.locator('#pg-shapes dd[data-name="attn_output"]')).to_have_text("[5,3,128]")
    wait_ready(page)
    expect(page.locator('.pg-head[data-head="mean"]')).to_have_count(1)
    page.check("#pg-add_zero_attn")
    expect(page.locator('#pg-shapes dd[data-name="attn_weights"]')).to_have_text("[3,5,8] (batch, query_pos, key_pos)")
    wait_ready(page)
    ticks = page.locator(".pg-head .xtick text").all_text_contents()
    assert ticks[-1] == "zero_attn"
    expect(page.locator('#pg-shapes dd[data-name="max_abs_diff"]')).to_contain_text("model.mha.textbook_attention")


def test_a_refused_configuration_says_which_rule(page):
    open_playground(page)
    set_field(page, "num_heads", 5)  # 64 is not divisible by 5
    expect(page.locator("#pg-status")).to_contain_text("not divisible by num_heads 5")
    assert page.locator("#pg-status").get_attribute("data-kind") == "error"
    assert page.console_errors == ["Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"]
    page.console_errors.clear()
    set_field(page, "num_heads", 4)
    wait_ready(page)
    expect(page.locator("#pg-status")).not_to_have_attribute("data-kind", "error")
