"""Comparing heads in the browser: head map, sortable table, similarity, side-by-side compare,
word-level and special-token views, and corpus runs with progress and cancel."""

from urllib.parse import urlencode

import numpy as np
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

SENTENCE = "The cat sat on the mat because it was unbelievably warm."
OTHER = "A different sentence entirely, with commas."


def open_page(page, **params):
    page.goto(f"{page.base_url}/?{urlencode(params)}")
    page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=60_000)


def test_head_map_colours_every_head_by_the_chosen_metric(page, client):
    open_page(page, text=SENTENCE, tab="map")
    cells = page.locator("#head-map .map-cell")
    expect(cells).to_have_count(72)
    heads = client.post("/api/attention", json={"text": SENTENCE}).json()["heads"]["encoder"]
    for metric in ("previous_token", "entropy"):
        page.select_option("#map-metric", metric)
        shown = [float(v) for v in cells.evaluate_all("cs => cs.map(c => c.dataset.value)")]
        np.testing.assert_allclose(shown, [h["metrics"][metric] for h in heads], rtol=1e-6)
    page.select_option("#map-metric", "previous_token")
    best = page.locator('.map-cell[data-layer="0"][data-head="2"]')
    assert best.get_attribute("title").startswith("L0H2 previous_token = 1.0")
    best.click()
    expect(page.locator("#detail-title")).to_have_text("L0H2 · encoder")


def test_table_sorts_by_any_metric_and_shows_role_badges(page):
    open_page(page, text=SENTENCE, tab="table")
    rows = page.locator("#head-table tbody tr")
    expect(rows).to_have_count(72)
    page.click('#head-table th[data-key="previous_token"] button')
    assert rows.first.locator("td").first.text_content() == "L0H2"
    expect(rows.first.locator(".badge", has_text="previous_token")).to_have_count(1)
    values = [float(t) for t in page.locator('#head-table tbody td[data-key="previous_token"]').all_text_contents()]
    assert values == sorted(values, reverse=True)
    page.click('#head-table th[data-key="previous_token"] button')  # again: ascending
    assert rows.last.locator("td").first.text_content() == "L0H2"
    rows.last.click()
    expect(page.locator("#detail-title")).to_have_text("L0H2 · encoder")


def test_similarity_is_clustered_and_a_click_compares_two_heads(page, client):
    open_page(page, text=SENTENCE, tab="similarity")
    page.wait_for_selector("#similarity-plot .xtick text")
    order = page.get_attribute("#similarity-plot", "data-order").split()
    sim = client.post("/api/attention", json={"text": SENTENCE, "similarity": True}).json()["similarity"]["encoder"]
    assert order == [sim["heads"][i] for i in sim["order"]]
    box = page.locator("#similarity-plot .nsewdrag").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 1.5 / 72, box["y"] + box["height"] * 0.5 / 72)
    expect(page.locator("#compare-plots .plot")).to_have_count(3)
    assert page.get_attribute("#compare-plots", "data-compared") == f"{order[0]} {order[1]}"


def test_compare_two_heads_shows_their_difference(page, minilm):
    open_page(page, text=SENTENCE, tab="compare")
    page.fill("#compare-a", "L0H2")
    page.fill("#compare-b", "L1H8")
    page.click("#compare-heads")
    expect(page.locator("#compare-plots .plot")).to_have_count(3)
    page.wait_for_function("() => document.querySelectorAll('#compare-plots .gtitle').length === 3")
    titles = page.locator("#compare-plots .gtitle").all_text_contents()
    assert titles == ["L0H2 (encoder)", "L1H8 (encoder)", "L0H2 − L1H8"]
    diff = np.asarray(page.evaluate("document.querySelectorAll('#compare-plots .plot')[2].data[0].z"))
    pattern = minilm.analyze(SENTENCE).patterns["encoder"].numpy()
    np.testing.assert_allclose(diff, pattern[0, 2] - pattern[1, 8], atol=0.005)  # 8-bit page data


def test_one_head_on_two_sentences(page, minilm):
    open_page(page, text=SENTENCE, tab="compare")
    page.fill("#compare-a", "L0H2")
    page.fill("#compare-text", OTHER)
    page.click("#compare-texts")
    expect(page.locator("#compare-plots .plot")).to_have_count(2)
    page.wait_for_function("() => document.querySelectorAll('#compare-plots .plot')[1].querySelectorAll('.xtick text').length > 0")
    second = page.locator("#compare-plots .plot").nth(1).locator(".xtick text").all_text_contents()
    assert second == minilm.analyze(OTHER).tokens


def merged_reference(minilm, text):
    """The word view computed independently from exact weights: hide [CLS]/[SEP] and renormalise
    rows (rows left with under 1% of their weight stay empty), then columns summed over a word's
    pieces and rows averaged over them."""
    a = minilm.analyze(text)
    pattern = a.patterns["encoder"][0, 2].numpy()
    keep = [i for i, s in enumerate(a.special) if not s]
    p = pattern[np.ix_(keep, keep)]
    kept = p.sum(1, keepdims=True)
    p = np.where(kept >= 0.01, p / kept, 0.0)
    words, labels = [], []
    for k, i in enumerate(keep):
        if a.tokens[i].startswith("##"):
            words[-1].append(k)
            labels[-1] += a.tokens[i][2:]
        else:
            words.append([k])
            labels.append(a.tokens[i])
    m = np.array([[p[np.ix_(rw, cw)].sum(1).mean() for cw in words] for rw in words])
    return labels, m


def test_word_view_and_hidden_special_tokens_are_computed_and_labelled(page, minilm):
    open_page(page, text=SENTENCE)
    page.check("#opt-words")
    page.check("#opt-nospecial")
    expect(page.locator("#transform-label")).to_contain_text("words")
    expect(page.locator("#transform-label")).to_contain_text("special tokens hidden")
    assert "words=1" in page.url and "nospecial=1" in page.url
    page.click('canvas.head[data-layer="0"][data-head="2"]')
    page.wait_for_selector("#heatmap .xtick text")
    labels, expected = merged_reference(minilm, SENTENCE)
    assert page.locator("#heatmap .xtick text").all_text_contents() == labels
    assert "unbelievably" in labels and "[CLS]" not in labels
    shown = np.asarray(page.evaluate("document.getElementById('heatmap').data[0].z"))
    assert shown[0].sum() == 0  # "the" put its weight on the hidden [CLS]: drawn empty, not blown up
    np.testing.assert_allclose(shown, expected, atol=0.01)
    expect(page.locator("#detail-note")).to_contain_text("Transformed view")


CORPUS = [f"Sentence {i} tells the heads about cats, dogs and {i % 7} birds." for i in range(300)]


def test_corpus_runs_with_progress_and_feeds_the_head_map(page, client):
    open_page(page, text=SENTENCE, tab="corpus")
    page.fill("#corpus-text", "\n".join(CORPUS + ["", "   "]))
    page.click("#corpus-run")
    page.wait_for_function("() => document.body.dataset.corpus === 'done'", timeout=120_000)
    expect(page.locator("#corpus-status")).to_contain_text("300 sentences averaged")
    assert page.get_attribute("#corpus-progress", "value") == page.get_attribute("#corpus-progress", "max") == "300"
    page.click('[data-tab="map"]')
    expect(page.locator("#map-source")).to_have_value("corpus")
    page.select_option("#map-metric", "previous_token")
    answer = client.post("/api/corpus", json={"texts": CORPUS}).json()
    api = answer["heads"]["encoder"]
    shown = [float(v) for v in page.locator(".map-cell").evaluate_all("cs => cs.map(c => c.dataset.value)")]
    np.testing.assert_allclose(shown, [h["metrics"]["previous_token"] for h in api], rtol=1e-5)
    expect(page.locator("#map-basis")).to_contain_text("Means over 300 sentences")
    page.click('[data-tab="table"]')
    expect(page.locator('#head-table th[data-key="roles"]')).to_contain_text("roles (corpus means)")
    badge = page.locator('#head-table tbody tr[data-layer="0"][data-head="2"] .badge[data-role="previous_token"]')
    share = api[2]["role_share"]["previous_token"]
    expect(badge).to_have_text(f"previous_token {round(share * 100)}%")
    page.click('[data-tab="similarity"]')  # the corpus's head similarity, from every row of every sentence
    expect(page.locator("#similarity-source")).to_have_value("corpus")
    expect(page.locator("#similarity-basis")).to_contain_text("Corpus of 300 sentences")
    sim = answer["similarity"]["encoder"]
    page.wait_for_function("() => document.getElementById('similarity-plot').layout?.title.text.includes('corpus of 300')")
    assert page.get_attribute("#similarity-plot", "data-order").split() == [sim["heads"][i] for i in sim["order"]]


def test_corpus_from_a_file_and_cancel(page, tmp_path):
    open_page(page, text=SENTENCE, tab="corpus")
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(f"Line {i} of a long file about attention heads and their roles." for i in range(2000)))
    page.set_input_files("#corpus-file", str(path))
    expect(page.locator("#corpus-text")).to_have_value(path.read_text())
    page.click("#corpus-run")
    page.wait_for_function("() => +document.getElementById('corpus-progress').value > 0", timeout=60_000)
    page.click("#corpus-cancel")
    page.wait_for_function("() => document.body.dataset.corpus === 'cancelled'")
    expect(page.locator("#corpus-status")).to_have_text("Cancelled.")
    assert page.is_enabled("#corpus-run")


def test_table_and_head_map_say_what_their_numbers_are_and_that_the_view_options_do_not_change_them(page, client):
    """The Table's and Head map's numbers are the server's, on tokens (positional metrics without special tokens):
    toggling 'hide special tokens' or 'words' leaves them as they are, and the tab says so plainly."""
    open_page(page, text=SENTENCE, tab="table")
    heads = client.post("/api/attention", json={"text": SENTENCE}).json()["heads"]["encoder"]
    basis = page.locator("#table-basis")
    expect(basis).to_contain_text("this one text")
    assert basis.get_attribute("data-raw") == ""
    expect(page.locator('#head-table th[data-key="roles"]')).to_contain_text("roles (this text)")
    before = page.locator('#head-table tbody td[data-key="sink"]').all_text_contents()
    assert before == [f"{h['metrics']['sink']:.3f}" for h in heads]
    page.check("#opt-nospecial")
    expect(basis).to_have_attribute("data-raw", "1")
    expect(basis).to_contain_text("do not follow the view's options (hide special tokens)")
    assert page.locator('#head-table tbody td[data-key="sink"]').all_text_contents() == before
    page.check("#opt-words")
    expect(basis).to_contain_text("(words, hide special tokens)")
    page.click('[data-tab="map"]')
    expect(page.locator("#map-basis")).to_have_attribute("data-raw", "1")
    page.uncheck("#opt-words")
    page.uncheck("#opt-nospecial")
    expect(page.locator("#map-basis")).to_have_attribute("data-raw", "")


def view_distances(client, text):
    """Head distances of the 'hide special tokens' view in numpy, from the 8-bit weights the page gets (renormalising
    rows magnifies the 8-bit steps: the same input keeps the comparison tight): special rows and columns dropped,
    rows renormalised (under 1% kept: empty), Hellinger RMS over the rows both heads fill."""
    from headscope.server.encoding import read_safetensors

    a = read_safetensors(client.post("/api/attention", json={"text": text, "format": "compact"}).content)
    keep = [i for i, s in enumerate(a["special"]) if not s]
    T = len(a["tokens"])
    P = a["attention"]["encoder"].reshape(72, T, T)[:, keep][:, :, keep].astype(np.float64)
    kept = P.sum(-1, keepdims=True)
    P = np.where(kept >= 0.01, P / np.maximum(kept, 0.01), 0.0)  # (72, T, T)
    filled = P.sum(-1) > 0  # (72, T)
    D = np.zeros((72, 72))
    for x in range(72):
        for y in range(72):
            rows = filled[x] & filled[y]
            bc = np.sqrt(P[x][rows] * P[y][rows]).sum(-1)
            D[x, y] = np.sqrt(np.clip(1 - bc.mean(), 0, 1)) if rows.any() else 1.0
    np.fill_diagonal(D, 0)
    return D


def test_similarity_follows_hidden_special_tokens(page, client):
    open_page(page, text=SENTENCE, tab="similarity")
    page.wait_for_selector("#similarity-plot .xtick text")
    basis = page.locator("#similarity-basis")
    expect(basis).to_contain_text("Raw attention of every token")
    raw = np.asarray(page.evaluate("document.getElementById('similarity-plot').data[0].z"))
    page.check("#opt-nospecial")
    expect(basis).to_contain_text("Follows the view")
    page.wait_for_function("() => document.getElementById('similarity-plot').layout.title.text.includes('as the view')")
    order = page.get_attribute("#similarity-plot", "data-order").split()
    assert sorted(order) == sorted(f"L{layer}H{head}" for layer in range(6) for head in range(12))
    shown = np.asarray(page.evaluate("document.getElementById('similarity-plot').data[0].z"))
    index = [int(name[1]) * 12 + int(name[3:]) for name in order]
    expected = view_distances(client, SENTENCE)[np.ix_(index, index)]
    np.testing.assert_allclose(shown, expected, atol=1e-4)
    assert np.abs(np.sort(shown.flatten()) - np.sort(raw.flatten())).max() > 0.1  # the view changed the numbers
    page.uncheck("#opt-nospecial")
    expect(basis).to_contain_text("Raw attention of every token")
    page.check("#opt-words")  # "unbelievably" is several pieces: the view merges them
    expect(basis).to_contain_text("Follows the view")
    expect(basis).to_contain_text("words: columns summed over pieces")
