"""The Playground tab in real Chromium: presets, the form, the code, the shapes torch reports, the shapes of
the parameters and of every step, a heatmap per head for each batch element, the agreement in plain words,
and a clear message, alone, for a configuration PyTorch refuses or a request that fails."""

from dataclasses import asdict

import numpy as np
import pytest
import torch
from playwright.sync_api import expect

from headscope.analyses.playground import PRESETS

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
    expect(page.locator("#pg-agreement code")).to_contain_text("against headscope.models.attention.MultiHeadAttention")
    assert float(page.get_attribute("#pg-agreement-line", "data-value")) < 1e-5


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
    expect(page.locator("#pg-agreement code")).to_contain_text("headscope.analyses.playground.textbook_attention")


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


# ---- an error stands alone; every batch element; the shapes of the parameters and steps; plain words -------------


def api_answer(page, config: dict) -> dict:
    """The API's own answer for a configuration, fetched beside the page (not through its script)."""
    r = page.request.post(f"{page.base_url}/api/mha", data=config)
    assert r.ok, r.text()
    return r.json()


RESULT_PARTS = {  # what a result shows besides the code: a selector and how many of it at least
    "#pg-shapes dd": 7, "#pg-params tr": 3, "#pg-steps tr": 9, "#pg-batch button": 2,
    ".pg-head": 1, "#pg-agreement-line": 1,
}


def assert_result_shown(page):
    assert page.text_content("#pg-code").startswith("import torch")
    for selector, least in RESULT_PARTS.items():
        assert page.locator(selector).count() >= least, selector


def assert_only_the_message(page, message):
    expect(page.locator("#pg-status")).to_contain_text(message)
    assert page.locator("#pg-status").get_attribute("data-kind") == "error"
    assert page.text_content("#pg-code") == ""
    for selector in RESULT_PARTS:
        assert page.locator(selector).count() == 0, f"{selector} is still shown under the error"
    for box in ("#pg-agreement", "#pg-shapes", "#pg-params", "#pg-steps", "#pg-batch", "#pg-heads"):
        assert page.text_content(box) == "", box


def test_an_error_clears_every_earlier_result(page):
    open_playground(page)
    assert_result_shown(page)
    set_field(page, "num_heads", 5)  # a 422 from the API: 64 is not divisible by 5
    assert_only_the_message(page, "not divisible by num_heads 5")
    assert page.console_errors == ["Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"]
    page.console_errors.clear()
    set_field(page, "num_heads", 4)  # good again: everything drawn again
    wait_ready(page)
    assert_result_shown(page)

    page.fill("#pg-key_padding_mask", "10, x")  # bad shapes, refused before any request
    page.dispatch_event("#pg-key_padding_mask", "change")
    assert_only_the_message(page, '"x" is not a length')
    page.fill("#pg-key_padding_mask", "")
    page.dispatch_event("#pg-key_padding_mask", "change")
    wait_ready(page)
    assert_result_shown(page)

    page.route("**/api/mha", lambda route: route.abort())  # a network failure
    set_field(page, "seed", 3)
    assert_only_the_message(page, "the server cannot be reached")
    page.unroute("**/api/mha")
    assert all("ERR_FAILED" in e for e in page.console_errors)
    page.console_errors.clear()
    set_field(page, "seed", 4)
    wait_ready(page)
    assert_result_shown(page)


def drawn_batch(page, b):
    """Wait until the heads of batch element b are drawn; their z matrices."""
    page.wait_for_function(f"() => [...document.querySelectorAll('.pg-head')].length > 0 && "
                           f"[...document.querySelectorAll('.pg-head')].every(h => h.dataset.batch === '{b}' && h.data)",
                           timeout=30_000)
    return page.evaluate("[...document.querySelectorAll('.pg-head')].map(h => h.data[0].z)")


def test_every_batch_element_is_drawn_and_the_padding_shows(page):
    open_playground(page)
    preset = next(p for p in PRESETS if p.config.key_padding_mask is not None)  # the padded preset
    page.click(f'[data-preset="{preset.name}"]')
    expect(page.locator('#pg-shapes dd[data-name="attn_output"]')).to_have_text("[5,3,128]")
    wait_ready(page)
    answer = api_answer(page, asdict(preset.config))
    lengths = preset.config.key_padding_mask  # keys at positions >= length are padding
    N, S = preset.config.N, preset.config.S
    buttons = page.locator("#pg-batch button")
    expect(buttons).to_have_count(N)
    assert buttons.all_text_contents() == [f"batch {b}" + (f" · {S - n} padded" if n < S else "")
                                           for b, n in enumerate(lengths)]
    padded = max(range(N), key=lambda b: S - lengths[b])  # the element with the most padding (not element 0)
    assert padded != 0
    for b in range(N):
        page.click(f'#pg-batch button[data-batch="{b}"]')
        (z,) = drawn_batch(page, b)  # averaged weights: one map, (L, S)
        z = np.array(z, dtype=np.float32)
        np.testing.assert_array_equal(z, np.array(answer["weights"][b], dtype=np.float32))  # the API's numbers
        n = lengths[b]
        assert (z[:, n:] == 0).all() and (z[:, :n] > 0).all()  # a padded key weighs 0 for every query
        assert page.get_attribute(f'#pg-batch button[data-batch="{b}"]', "aria-pressed") == "true"
        expect(page.locator(".pg-head .gtitle")).to_have_text(f"mean of 8 heads · batch {b}")
    page.click(f'#pg-batch button[data-batch="{padded}"]')
    drawn_batch(page, padded)
    ticks = page.locator(".pg-head .xtick text").all_text_contents()
    assert ticks == [f"{j} pad" if j >= lengths[padded] else str(j) for j in range(S)]
    expect(page.locator("#pg-batch-note")).to_contain_text(
        f"batch {padded}: keys {', '.join(str(j) for j in range(lengths[padded], S))} are padding")

    page.uncheck("#pg-average_attn_weights")  # per head: the chosen element stays chosen
    wait_ready(page)
    maps = np.array(drawn_batch(page, padded), dtype=np.float32)  # (H, L, S)
    per_head = api_answer(page, {**asdict(preset.config), "average_attn_weights": False})
    np.testing.assert_array_equal(maps, np.array(per_head["weights"][padded], dtype=np.float32))
    assert (maps[:, :, lengths[padded]:] == 0).all()


def brackets(xs) -> str:
    return f"[{', '.join(map(str, xs))}]"


def table_rows(page, table):
    return page.evaluate(f"[...document.querySelectorAll('#{table} tr')].slice(1).map(r => "
                         "[r.dataset.name, ...[...r.cells].slice(1, 3).map(c => c.textContent)])")


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_parameter_and_step_shapes_come_from_the_answer(page, preset):
    open_playground(page)
    page.click(f'[data-preset="{preset.name}"]')
    expect(page.locator('#pg-shapes dd[data-name="query"]')).to_have_text(
        str([preset.config.L, preset.config.N, preset.config.embed_dim]).replace(" ", ""))
    wait_ready(page)
    answer = api_answer(page, asdict(preset.config))
    assert table_rows(page, "pg-params") == [[p["name"], brackets(p["shape"]), brackets(p["symbols"])]
                                             for p in answer["parameters"]]
    assert table_rows(page, "pg-steps") == [[s["name"], brackets(s["shape"]), brackets(s["symbols"])]
                                            for s in answer["steps"]]
    c = preset.config
    mha = torch.nn.MultiheadAttention(c.embed_dim, c.num_heads, kdim=c.kdim, vdim=c.vdim)  # torch's own, built here
    shown = {name: shape for name, shape, _ in table_rows(page, "pg-params")}
    assert shown == {name: brackets(p.shape) for name, p in mha.named_parameters()}
    caption = page.text_content("#pg-params caption")
    assert f"head_dim D = E / H = {c.embed_dim} / {c.num_heads} = {mha.head_dim}" in caption
    D = mha.head_dim
    steps = {name: shape for name, shape, _ in table_rows(page, "pg-steps")}
    assert steps["q"] == brackets([c.N, c.num_heads, c.L, D]) and steps["k"] == brackets([c.N, c.num_heads, c.S, D])
    assert steps["z_concat"] == brackets([c.N, c.L, c.embed_dim])
    if c.kdim is None:
        assert shown["in_proj_weight"] == brackets([3 * c.embed_dim, c.embed_dim])
        assert {n: s for n, _, s in table_rows(page, "pg-params")}["in_proj_weight"] == "[3E, E]"


def js_exponential(x: float) -> str:
    """Python's 2.4e-07 as JavaScript's toExponential(1) writes it: 2.4e-7."""
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa}e{int(exponent):+d}"


def test_the_agreement_is_said_in_plain_words_with_the_real_number(page):
    open_playground(page)
    seen = set()
    for preset in PRESETS:
        page.click(f'[data-preset="{preset.name}"]')
        expect(page.locator("#pg-code")).to_contain_text(f"num_heads={preset.config.num_heads}")
        wait_ready(page)
        answer = api_answer(page, asdict(preset.config))
        line = page.text_content("#pg-agreement-line")
        d = answer["max_abs_diff"]
        assert 0 <= d < 1e-5
        number = "0 (exactly equal)" if d == 0 else js_exponential(d)
        assert line == (f"{answer['compared_with_words']} equals torch.nn.MultiheadAttention's output and weights to "
                        f"within {number} (the largest difference of any number, over the whole batch).")
        assert line.startswith("Our step-by-step attention")
        assert "max_abs_diff" not in line and "headscope." not in line
        assert float(page.get_attribute("#pg-agreement-line", "data-value")) == d
        seen.add(d > 0)
        assert not page.locator("#pg-agreement details").evaluate("d => d.open")  # the technical name is tucked away
        assert page.text_content("#pg-agreement code") == f"max_abs_diff = {page.evaluate(f'String({d!r})')} against {answer['compared_with']}"
    assert seen == {True, False}  # a nonzero difference is written as a number, an exact match as 0
