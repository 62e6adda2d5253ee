"""The Patching tab in real Chromium on the induction model (tiny, fast): a streamed POST /api/patch drawn as Plotly
heatmaps whose z is exactly the API's recovery for the same request, read through the answer's dims; the request
round-trips through the URL; the swap helper; errors in the 422's words.

The page's CSP forbids eval, so the tests poll with page.evaluate of a function."""

import time
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

# docs/patching.md's example: a random string typed twice, the first half's last symbol corrupted
CLEAN, CORRUPTED, ANSWER, WRONG = 'u0R|:^7XrK u0R|:^7Xr', 'u0R|:^7Xr" u0R|:^7Xr', "K", '"'


def wait_for(page, state, timeout=120.0):
    """Poll body[data-patching] until it is `state` (or fail saying what it is)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        now = page.evaluate("() => document.body.dataset.patching || ''")
        if now == state:
            return
        if now in ("done", "error") and now != state:
            raise AssertionError(f"patching ended {now}: {page.inner_text('#pt-status')}")
        time.sleep(0.1)
    raise AssertionError(f"patching never became {state}")


def wait_idle(page):
    end = time.monotonic() + 60
    while page.evaluate("() => document.body.dataset.state") != "idle":
        assert time.monotonic() < end, "the page never became idle"
        time.sleep(0.1)


def escaped(label):
    """A label as Plotly's label markup must get it: & < > as entities (lib/heatmap.js escapeLabel)."""
    return label.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def drawn(page, name):
    return page.evaluate("(name) => { const d = [...document.querySelectorAll('#pt-maps .pt-map')]"
                         ".find((d) => d.dataset.map === name); return d && d.data[0]; }", name)


def flattened(m, key):
    """A map's `key` as the page's rows x columns: [layer, X] stays; [layer, head, position] -> layer·head rows
    (read by the names in dims, layer outer), positions as columns."""
    values, dims = m[key], m["dims"]
    if len(dims) == 2:
        assert dims[0] == "layer"
        return values
    assert dims == ["layer", "head", "position"]
    return [row for per_layer in values for row in per_layer]


INDUCTION = {"model": "induction", "clean": CLEAN, "corrupted": CORRUPTED, "answer": ANSWER, "wrong": WRONG}
# an encoder-decoder: maps for its encoder, decoder and cross-attention, read at the first step the outputs differ
DATES = {"model": "dates", "clean": "25/11/2026", "corrupted": "24/11/2026", "answer": "5", "wrong": "4"}


@pytest.mark.parametrize("prompts, patch", [(INDUCTION, "heads"), (INDUCTION, "residual"),
                                            (INDUCTION, "head_positions"), (DATES, "heads")])
def test_a_link_runs_and_draws_the_apis_recovery(page, client, prompts, patch):
    fields = {"tab": "patching", **prompts, "patch": patch, "direction": "denoise", "metric": "logit_diff"}
    page.goto(f"{page.base_url}/?{urlencode(fields)}")
    wait_for(page, "done")
    request = {k: fields[k] for k in ("model", "clean", "corrupted", "answer", "wrong", "patch", "direction", "metric")}
    api = client.post("/api/patch", json=request).json()
    names = page.evaluate("() => [...document.querySelectorAll('#pt-maps .pt-map')].map((d) => d.dataset.map)")
    assert names == [m["name"] for m in api["maps"]]
    for m in api["maps"]:
        trace = drawn(page, m["name"])
        assert m["dims"][-1] == ("head" if patch == "heads" else "position") and m["dims"][0] == "layer"
        assert trace["z"] == flattened(m, "recovery") and trace["customdata"] == flattened(m, "patched")
        assert trace["zmin"] == -trace["zmax"]  # centred on zero
        layout = page.evaluate("(name) => [...document.querySelectorAll('#pt-maps .pt-map')]"
                               ".find((d) => d.dataset.map === name).layout", m["name"])
        rows = m["labels"]["layer"] if len(m["dims"]) == 2 else [
            f"{la}{he}" for la in m["labels"]["layer"] for he in m["labels"]["head"]]
        assert layout["yaxis"]["ticktext"] == rows
        assert layout["xaxis"]["ticktext"] == [escaped(t) for t in m["labels"][m["dims"][-1]]]  # tokens as text
    assert page.locator("#pt-maps .pt-map .hm").count() == len(api["maps"])  # Plotly drew them
    summary = page.inner_text("#pt-summary")
    assert f"Clean {api['clean_metric']:.4f}" in summary and f"corrupted {api['corrupted_metric']:.4f}" in summary
    expect(page.locator("#pt-status")).to_have_text(f"{api['cells']} cells patched in {api['forward_passes']} forward passes.")
    assert page.get_attribute("#pt-progress", "value") == page.get_attribute("#pt-progress", "max") == str(api["cells"])
    q = parse_qs(urlparse(page.url).query)  # the URL keeps everything asked (patch, direction: unless the default)
    for k in ("clean", "corrupted", "answer", "wrong", "metric"):
        assert q[k] == [fields[k]]
    assert q.get("patch", ["heads"]) == [patch] and "direction" not in q and q["tab"] == ["patching"]


def test_the_controls_write_the_url_and_the_swap_helper_corrupts(page):
    page.goto(f"{page.base_url}/?tab=patching&model=induction")
    wait_idle(page)
    page.fill("#pt-clean", "When Mary and John went to the store, John gave a drink to")
    page.fill("#pt-swap-a", "2")
    page.fill("#pt-swap-b", "4")
    page.click("#pt-swap")
    assert page.input_value("#pt-corrupted") == "When John and Mary went to the store, John gave a drink to"
    page.fill("#pt-answer", "M")  # the induction model reads bytes: one character is one token
    page.dispatch_event("#pt-answer", "change")
    page.fill("#pt-wrong", "J")
    page.dispatch_event("#pt-wrong", "change")
    page.select_option("#pt-direction", "noise")
    page.select_option("#pt-patch", "layers")
    q = parse_qs(urlparse(page.url).query)
    assert q["corrupted"] == ["When John and Mary went to the store, John gave a drink to"]
    assert q["answer"] == ["M"] and q["wrong"] == ["J"] and q["direction"] == ["noise"] and q["patch"] == ["layers"]
    page.goto(page.url)  # the same link gives the same controls back, and runs them
    wait_for(page, "done")
    assert page.input_value("#pt-answer") == "M" and page.input_value("#pt-direction") == "noise"
    assert page.input_value("#pt-patch") == "layers"
    assert page.input_value("#pt-clean") == "When Mary and John went to the store, John gave a drink to"
    names = page.evaluate("() => [...document.querySelectorAll('#pt-maps .pt-map')].map((d) => d.dataset.map)")
    assert names and all(n.endswith((".attn_out", ".mlp_out")) for n in names)  # patch=layers was run
    page.fill("#pt-swap-a", "2")  # the same word twice: said, nothing changes
    page.fill("#pt-swap-b", "2")
    page.click("#pt-swap")
    expect(page.locator("#pt-status")).to_have_text("Pick two different words between 1 and 13 of the clean prompt.")
    assert page.input_value("#pt-corrupted") == "When John and Mary went to the store, John gave a drink to"


@pytest.mark.parametrize("case", ["lengths", "answer"])
def test_errors_are_shown_in_the_422s_words(page, client, case):
    fields = {"model": "induction", "clean": CLEAN, "corrupted": CORRUPTED + "x", "answer": ANSWER, "wrong": WRONG}
    if case == "answer":
        fields.update(corrupted=CORRUPTED, answer="KK")
    page.goto(f"{page.base_url}/?tab=patching&{urlencode(fields)}")
    wait_for(page, "error")
    body = client.post("/api/patch", json=fields)
    assert body.status_code == 422
    body = body.json()
    expect(page.locator("#pt-status")).to_have_text(body["detail"])
    tokens = page.inner_text("#pt-tokens")
    if case == "lengths":
        assert body["error"] == "token_count_mismatch"
        assert " | ".join(body["clean_tokens"]) in tokens and " | ".join(body["corrupted_tokens"]) in tokens
    else:
        assert body["error"] == "not_one_token" and body["field"] == "answer"
        assert tokens == "answer: " + " | ".join(body["tokens"])
    assert page.locator("#pt-maps .pt-map").count() == 0
    assert page.console_errors == ["Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"]
    page.console_errors.clear()


def test_clicking_a_head_shows_its_pattern_on_both_prompts(page, client):
    import numpy as np

    fields = {"tab": "patching", "model": "induction", "clean": CLEAN, "corrupted": CORRUPTED, "answer": ANSWER,
              "wrong": WRONG}
    page.goto(f"{page.base_url}/?{urlencode(fields)}")
    wait_for(page, "done")
    m = client.post("/api/patch", json={k: v for k, v in fields.items() if k != "tab"}).json()["maps"][0]
    assert m["dims"] == ["layer", "head"] and m["point"] == "z"
    L, H = len(m["labels"]["layer"]), len(m["labels"]["head"])
    box = page.locator(f'#pt-maps [data-map="{m["name"]}"] .nsewdrag').bounding_box()
    layer, head = L - 1, 1  # rows are layers from the top (reversed axis), columns heads
    page.mouse.click(box["x"] + box["width"] * (head + 0.5) / H, box["y"] + box["height"] * (layer + 0.5) / L)
    end = time.monotonic() + 60
    while page.evaluate("() => document.getElementById('pt-patterns').dataset.head || ''") != f"{m['kind']}:{layer}:{head}":
        assert time.monotonic() < end, page.inner_text("#pt-pattern-note")
        time.sleep(0.1)
    for which, text in (("clean", CLEAN), ("corrupted", CORRUPTED)):
        api = client.post("/api/attention", json={"text": text, "model": "induction"}).json()
        assert api["dims"] == ["layer", "head", "query_pos", "key_pos"]
        want = np.array(api["attention"][m["kind"]])[layer, head]
        z = np.array(page.evaluate(f"() => document.getElementById('pt-pattern-{which}').data[0].z"), dtype=float)
        np.testing.assert_allclose(z, want, atol=1e-6)  # float32 weights, as the API's JSON
    expect(page.locator("#pt-pattern-note")).to_contain_text(f"L{layer}H{head} ({m['kind']})")


def test_answer_and_wrong_are_proposed_from_the_apis_predictions(page, client):
    fields = {"model": "induction", "clean": CLEAN, "corrupted": CORRUPTED}  # no answer, no wrong
    page.goto(f"{page.base_url}/?tab=patching&{urlencode(fields)}")
    wait_for(page, "done")
    clean = client.post("/api/predict", json={"model": "induction", "text": CLEAN, "k": 5}).json()["predictions"]
    corrupted = client.post("/api/predict", json={"model": "induction", "text": CORRUPTED, "k": 5}).json()["predictions"]
    answer = [p for p in clean if p["text"] is not None][0]
    wrong = next(p for p in corrupted if p["text"] is not None and p["id"] != answer["id"])
    assert page.input_value("#pt-answer") == answer["text"] == ANSWER  # induction copies the clean first half
    assert page.input_value("#pt-wrong") == wrong["text"]
    query = parse_qs(urlparse(page.url).query)
    assert query["answer"] == [answer["text"]] and query["wrong"] == [wrong["text"]]
    api = client.post("/api/patch", json={**fields, "answer": answer["text"], "wrong": wrong["text"]}).json()
    assert drawn(page, api["maps"][0]["name"])["z"] == flattened(api["maps"][0], "recovery")
