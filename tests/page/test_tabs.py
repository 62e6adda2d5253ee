"""The tabs in real Chromium: the page runs whatever tabs the registry (headscope/server/tabs.py) lists, a tab
whose script fails says so in its own section, an unknown ?tab= or ?model= is said on the page, and the page
reads an answer's axes by their names (`dims`), not by their order."""

import base64
import json
from urllib.parse import parse_qs, urlencode, urlparse

import numpy as np
import pytest
import torch
from jinja2 import ChoiceLoader, DictLoader
from playwright.sync_api import expect
from safetensors.numpy import save

from headscope.models.analysis import DIMS
from headscope.server import tabs
from headscope.server.encoding import quantize
from headscope.server.routes import pages

pytestmark = pytest.mark.browser


def patch_registry(monkeypatch, registry, partials):
    monkeypatch.setattr(tabs, "TABS", registry)
    monkeypatch.setattr(pages.templates.env, "loader", ChoiceLoader([DictLoader(partials), pages.templates.env.loader]))


def visible_sections(page):
    return page.eval_on_selector_all("main > section.tab", "ss => ss.filter(s => !s.hidden).map(s => s.dataset.tab)")


# A tab the page has never seen: its module registers two hooks, which write what they were given into its section.
EXTRA_JS = """import { elements } from '../lib/dom.js';
import { register } from '../lib/registry.js';

const el = elements(['extra-body']);
let draws = 0;

function draw(page) {
  draws += 1;
  el.extraBody.dataset.draws = String(draws);
}

function analysed(page) {
  el.extraBody.dataset.tokens = page.result ? page.result.tokens.join(' ') : '';
}

register(import.meta.url, { draw, analysed });
"""


@pytest.fixture
def extra_script(app, tmp_path, monkeypatch):
    """static/js/tabs/extra-test.js served from a folder of the test's own (the static files' second directory)."""
    (tmp_path / "js" / "tabs").mkdir(parents=True)
    (tmp_path / "js" / "tabs" / "extra-test.js").write_text(EXTRA_JS)
    static = next(route for route in app.routes if getattr(route, "name", None) == "static").app
    monkeypatch.setattr(static, "all_directories", [*static.all_directories, tmp_path])
    return "js/tabs/extra-test.js"


def test_the_page_runs_the_tabs_the_registry_lists(page, monkeypatch, extra_script, minilm):
    extra = tabs.Tab("extra", "Extra things", template="tabs/extra-test.html", script=extra_script)
    registry = tuple(t for t in tabs.TABS if t.name != "probes")
    registry = registry[:3] + (extra,) + registry[3:]
    patch_registry(monkeypatch, registry, {"tabs/extra-test.html": '<p id="extra-body">Something else.</p>'})
    requested = []
    page.on("request", lambda r: requested.append(urlparse(r.url).path))
    page.goto(f"{page.base_url}/?tab=extra")
    page.wait_for_function("() => document.body.dataset.state === 'idle'", timeout=60_000)
    assert visible_sections(page) == ["extra"]
    expect(page.locator("#extra-body")).to_have_attribute("data-draws", "1")  # main.js ran the new tab's draw
    assert page.locator("#tabs button").all_text_contents() == [t.label for t in registry]
    assert page.locator(".tab-error:not([hidden])").count() == 0  # every tab's module registered
    scripts = {p for p in requested if p.startswith("/static/js/tabs/")}
    assert scripts == {f"/static/{t.script}" for t in registry}  # every tab's module, and only theirs
    for tab in registry:  # each button shows its own section and names it in the URL
        page.click(f'#tabs [data-tab="{tab.name}"]')
        assert visible_sections(page) == [tab.name]
        expect(page.locator(f'#tabs [data-tab="{tab.name}"]')).to_have_attribute("aria-selected", "true")
        assert parse_qs(urlparse(page.url).query).get("tab", [registry[0].name]) == [tab.name]
    expect(page.locator("#extra-body")).to_have_attribute("data-draws", "2")
    page.fill("#text", "The cat sat on the mat.")
    page.click("#analyze")
    page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=60_000)
    expect(page.locator("#grids canvas.head")).to_have_count(72)  # the Heads tab's module drew, with one tab fewer and one more
    expect(page.locator("#extra-body")).to_have_attribute("data-tokens", " ".join(minilm.analyze("The cat sat on the mat.").tokens))


def test_a_tab_whose_script_fails_says_so_and_the_others_work(page, monkeypatch):
    broken = tabs.Tab("broken", "Broken", template="tabs/broken-test.html", script="js/tabs/no-such-tab.js")
    patch_registry(monkeypatch, tabs.TABS + (broken,), {"tabs/broken-test.html": "<p>Never drawn.</p>"})
    page.goto(f"{page.base_url}/?tab=broken&text=hi")
    page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=60_000)
    note = page.locator("#tab-broken .tab-error")
    expect(note).to_be_visible()
    expect(note).to_contain_text("The Broken tab could not load its script (/static/js/tabs/no-such-tab.js)")
    page.click('#tabs [data-tab="grid"]')
    expect(page.locator("canvas.head")).to_have_count(72)
    assert page.console_errors and all("404" in e for e in page.console_errors), page.console_errors
    page.console_errors.clear()


def test_an_unknown_tab_and_model_are_said_and_the_defaults_run(page, models):
    page.goto(f"{page.base_url}/?{urlencode({'text': 'The cat sat.', 'tab': 'nope', 'model': 'gpt-17'})}")
    page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=60_000)
    notices = page.locator("[data-notice]")
    expect(notices).to_have_count(2)
    expect(notices.nth(0)).to_contain_text("There is no tab 'nope': showing Heads.")
    expect(notices.nth(1)).to_contain_text(f"This server has no model 'gpt-17': showing {next(iter(models))}.")
    assert visible_sections(page) == [tabs.TABS[0].name]
    assert page.input_value("#model") == next(iter(models))
    expect(page.locator("canvas.head")).to_have_count(72)
    query = parse_qs(urlparse(page.url).query)
    assert "tab" not in query and query["model"] == [next(iter(models))]  # the URL now says what is shown


# ---- dims ------------------------------------------------------------------------------------------------------

ORDER = ["head", "layer", "key_pos", "query_pos"]  # an order of axes the page was never written for
TOKENS, OUTPUT = ["a", "b", "c", "d", "e"], ["<s>", "x", "y"]


def permuted_answer(pattern: np.ndarray, rollout: np.ndarray, compact: bool) -> bytes:
    """An /api/attention binary answer (as headscope/server/encoding.py writes one) whose arrays are stored in ORDER,
    and its rollout as (key_pos, query_pos), each saying so in `dims`."""
    perm = [DIMS.index(d) for d in ORDER]
    entry = {"shape": [pattern.shape[i] for i in perm], "tensor": "attention.cross"}
    if compact:
        # scaled to the rows but the first (as a causal kind is), so that the first row's larger weights overflow
        data, scale, (index, value) = quantize(torch.from_numpy(pattern), torch.from_numpy(pattern[:, :, 1:].max((-2, -1))))
        tensors = {"attention.cross": np.ascontiguousarray(data.transpose(perm)),
                   "scale.cross": np.ascontiguousarray(np.asarray(scale, np.float32).T),  # (head, layer), as ORDER
                   "overflow_index.cross": np.ascontiguousarray(index[:, perm]), "overflow_value.cross": value}
        entry.update(dtype="uint8", scale="scale.cross",
                     overflow={"index": "overflow_index.cross", "value": "overflow_value.cross"})
    else:
        tensors = {"attention.cross": np.ascontiguousarray(pattern.transpose(perm))}
        entry.update(dtype="float32", scale=None)
    tensors["rollout.cross"] = np.ascontiguousarray(rollout.T)
    fields = {"dims": ORDER, "tokens": TOKENS, "output_tokens": OUTPUT, "layout": {"cross": {"rows": "output_tokens",
              "columns": "tokens", "causal": False}}, "pool": {"cross": [1, 1]}, "attention": {"cross": entry},
              "rollout": {"cross": {"dtype": "float32", "shape": list(rollout.T.shape), "tensor": "rollout.cross"}},
              "rollout_about": {"dims": ["key_pos", "query_pos"]}}
    return save(tensors, metadata={k: json.dumps(v) for k, v in fields.items()})


READ = """async ([body, dims]) => {
    const bytes = Uint8Array.from(atob(body), (c) => c.charCodeAt(0));
    const { decodeAnswer } = await import('/static/js/lib/api.js');
    const { rawMatrix } = await import('/static/js/lib/views.js');
    const { byRows } = await import('/static/js/lib/dims.js');
    const kd = decodeAnswer(bytes.buffer).kinds.cross;
    const heads = [];
    for (let l = 0; l < kd.L; l++) for (let h = 0; h < kd.H; h++) heads.push(Array.from(rawMatrix(kd, l, h)));
    const rollout = decodeAnswer(bytes.buffer).rollout.cross;
    return { shape: [kd.L, kd.H, kd.Tq, kd.Tk], heads, rollout: [rollout.Tq, rollout.Tk, Array.from(rollout.values)],
      byRows: byRows([[1, 2, 3], [4, 5, 6]], dims, 'layer') };
}"""


@pytest.mark.parametrize("compact", [False, True], ids=["float32", "compact"])
def test_the_page_reads_axes_by_their_names(page, compact):
    rng = np.random.default_rng(0)
    L, H, Tq, Tk = 2, 3, len(OUTPUT), len(TOKENS)
    pattern = rng.random((L, H, Tq, Tk), dtype=np.float32)
    pattern /= pattern.sum(-1, keepdims=True)
    rollout = rng.random((Tq, Tk), dtype=np.float32)
    page.goto(page.base_url)
    body = base64.b64encode(permuted_answer(pattern, rollout, compact)).decode()
    out = page.evaluate(READ, [body, ["head", "layer"]])
    assert out["shape"] == [L, H, Tq, Tk]
    shown = np.asarray(out["heads"]).reshape(L, H, Tq, Tk)
    scale = pattern[:, :, 1:].max(axis=(-2, -1), keepdims=True)
    tolerance = scale / 510 + 1e-7 if compact else 0  # 8-bit: within scale / 510; above the scale: exact
    assert (np.abs(shown - pattern) <= tolerance).all()
    if compact:
        over = pattern > scale
        assert over.any() and np.array_equal(shown[over], pattern[over])
    assert out["rollout"][:2] == [Tq, Tk] and np.array_equal(np.asarray(out["rollout"][2]).reshape(Tq, Tk), rollout)
    assert out["byRows"] == [[1, 4], [2, 5], [3, 6]]  # [head][layer] read as [layer][head]
