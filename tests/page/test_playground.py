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
    expect(page.locator('#pg-shapes dd[data-name="max_abs_diff"]')).to_contain_text("against headscope.models.attention.MultiHeadAttention")
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
    expect(page.locator('#pg-shapes dd[data-name="max_abs_diff"]')).to_contain_text("headscope.analyses.playground.textbook_attention")


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


def url_settings(page) -> dict:
    return page.evaluate("Object.fromEntries(new URLSearchParams(location.search))")


def test_settings_live_in_the_url_and_are_restored_on_load(page):
    open_playground(page)
    page.click('[data-preset="cross-attention"]')
    expect(page.locator('#pg-shapes dd[data-name="attn_output"]')).to_have_text("[5,3,128]")
    wait_ready(page)
    set_field(page, "num_heads", 4)
    set_field(page, "seed", 7)
    page.fill("#pg-key_padding_mask", "7, 5, 3")
    page.uncheck("#pg-average_attn_weights")  # a change event: runs with every setting above
    expect(page.locator('#pg-shapes dd[data-name="attn_weights"]')).to_have_text("[3,4,5,7] (batch, head, query_pos, key_pos)")
    wait_ready(page)
    weights = page.evaluate("[...document.querySelectorAll('.pg-head')].map(h => h.data[0].z)")
    settings = url_settings(page)
    assert settings["tab"] == "playground"
    assert {k: settings[k] for k in ("embed_dim", "num_heads", "L", "S", "N", "seed", "key_padding_mask",
                                      "average_attn_weights", "need_weights")} == {
        "embed_dim": "128", "num_heads": "4", "L": "5", "S": "7", "N": "3", "seed": "7", "key_padding_mask": "7, 5, 3",
        "average_attn_weights": "0", "need_weights": "1"}

    page.goto(page.url)  # a fresh load of the shared link
    wait_ready(page)
    assert page.input_value("#pg-num_heads") == "4" and page.input_value("#pg-seed") == "7"
    assert page.input_value("#pg-key_padding_mask") == "7, 5, 3" and not page.is_checked("#pg-average_attn_weights")
    assert shape(page, "attn_weights") == "[3,4,5,7] (batch, head, query_pos, key_pos)"
    assert page.evaluate("[...document.querySelectorAll('.pg-head')].map(h => h.data[0].z)") == weights  # same seed
    assert url_settings(page) == settings


def test_a_link_with_a_few_settings_starts_from_the_first_preset(page):
    page.goto(f"{page.base_url}/?tab=playground&num_heads=2&causal=1&seed=x")  # a seed that is no number is ignored
    wait_ready(page)
    assert page.input_value("#pg-num_heads") == "2" and page.is_checked("#pg-causal")
    assert page.input_value("#pg-embed_dim") == "64"  # from the first preset, [10, 2, 64]
    assert shape(page, "attn_output") == "[10,2,64]"
    assert url_settings(page)["seed"] != "x"
