"""Per-head summaries: corpus averages equal the mean of single runs, through the model and the API;
sums of parts merge into the sums of the whole."""

import math

import numpy as np
import pytest
import torch

from headscope.analyses.heads import Sums, corpus_sums, lines_sums, plan_corpus, summarize_heads
from headscope.analyses.metrics import METRICS
from headscope.analyses.roles import ROLES

TEXTS = [
    "The cat sat on the mat.",
    "Dogs bark; cats meow, and birds sing!",
    "A sentence without any punctuation at all",
    "Repeat after me repeat after me repeat after me.",
    "Short one.",
    "Attention heads specialise: some look back, some look at the separator, others spread out widely.",
]


def mean_of_single_runs(records_per_text, metric, index):
    values = [r[index]["metrics"][metric] for r in records_per_text]
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def test_corpus_batches_are_bounded_by_padded_tokens(minilm):
    """32 texts of ~500 tokens run a few at a time, not as one 32 x 512 batch (its attention alone: 2.4 GB)."""
    texts = [f"text {i} " + "word " * 480 for i in range(32)] + ["A short one.", "Another short one."]
    batches, errors, tokens = plan_corpus(minilm, texts, truncate=False, batch_size=32, padded_tokens=1024)
    assert errors == [] and sorted(t for b in batches for t in b) == sorted(texts)
    counts = {t: minilm.count_tokens(t) for t in texts}
    assert tokens == sum(counts.values())
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(counts[t] for t in batch) <= 1024, [counts[t] for t in batch]
    assert ["A short one.", "Another short one."] in batches  # the short ones together, not padded to 490


def test_corpus_average_equals_the_mean_of_single_runs(minilm):
    batches, errors, _ = plan_corpus(minilm, TEXTS, truncate=False, batch_size=4)
    assert errors == [] and sorted(t for b in batches for t in b) == sorted(TEXTS)
    sums = sum((corpus_sums(minilm, batch) for batch in batches), Sums())  # padded batches of different lengths
    assert sums.sentences == len(TEXTS)
    singles = [summarize_heads(minilm.analyze(t))["encoder"] for t in TEXTS]
    summary = sums.summary()["encoder"]
    for metric in METRICS:
        for index in range(72):
            expected = mean_of_single_runs(singles, metric, index)
            got = summary[index]["metrics"][metric]
            if expected is None:
                assert got is None
            else:
                assert got == pytest.approx(expected, abs=2e-6), (metric, index)


def test_sums_of_parts_merge_into_the_sums_of_the_whole(minilm):
    whole = corpus_sums(minilm, TEXTS)
    parts = [corpus_sums(minilm, TEXTS[i : i + 2]) for i in range(0, len(TEXTS), 2)]
    for merged in (sum(parts, Sums()), parts[2] + parts[0] + parts[1], Sums().merge(parts[1]).merge(parts[0] + parts[2])):
        assert merged.sentences == whole.sentences == len(TEXTS) and merged.keys == whole.keys
        for metric, total in whole.totals["encoder"].items():
            assert torch.equal(merged.counts["encoder"][metric], whole.counts["encoder"][metric])
            torch.testing.assert_close(merged.totals["encoder"][metric], total, rtol=0, atol=1e-5)
        for role, fired in whole.fired["encoder"].items():
            assert torch.equal(merged.fired["encoder"][role], fired)
        torch.testing.assert_close(merged.affinity["encoder"], whole.affinity["encoder"], rtol=1e-6, atol=0)
        assert merged.rows == whole.rows
    assert Sums().summary() == {} and Sums().similarity() == {}  # nothing summed: no heads, no division by zero


def test_lines_sums_reports_lines_by_their_number_in_the_file(minilm):
    lines = ["fine", "", "word " * 600, "   ", "also fine"]
    done = []
    sums, skipped = lines_sums(minilm, lines, [10, 11, 12, 13, 14], truncate=False, batch_size=1, progress=done.append)
    assert skipped == [{"line": 12, "error": "text has 602 tokens but minilm takes at most 512"}]  # blank: no report
    assert sums.sentences == 2 and sum(done) == len(lines) and done[0] == 3  # skipped lines at once, then batches
    assert sums.keys == corpus_sums(minilm, ["fine", "also fine"]).keys


def test_plan_reports_bad_entries_and_keeps_going(minilm):
    texts = ["fine", "", "   ", "word " * 600, "also fine"]
    batches, errors, tokens = plan_corpus(minilm, texts, truncate=False, batch_size=32)
    assert [e["index"] for e in errors] == [1, 2, 3]
    assert "602 tokens" in errors[2]["error"] and "512" in errors[2]["error"]
    assert batches == [["fine", "also fine"]] and tokens == 3 + 4
    batches, errors, tokens = plan_corpus(minilm, texts, truncate=True, batch_size=32)
    assert [e["index"] for e in errors] == [1, 2] and tokens == 3 + 4 + 512


def test_api_corpus_equals_the_mean_of_api_attention(client):
    texts = TEXTS[:4] + [""]
    body = client.post("/api/corpus", json={"texts": texts}).json()
    assert body["sentences"] == 4 and body["errors"] == [{"index": 4, "error": "text is empty or only whitespace"}]
    singles = [client.post("/api/attention", json={"text": t}).json()["heads"]["encoder"] for t in texts[:4]]
    for metric in ("entropy", "previous_token", "punctuation", "induction"):
        got = [h["metrics"][metric] for h in body["heads"]["encoder"]]
        expected = [mean_of_single_runs(singles, metric, i) for i in range(72)]
        np.testing.assert_allclose(np.array(got, dtype=float), np.array(expected, dtype=float), atol=2e-6)
    assert "previous_token" in body["heads"]["encoder"][2]["roles"]
    for index in range(72):  # spread and role shares of the single answers
        record = body["heads"]["encoder"][index]
        values = [s[index]["metrics"]["sink"] for s in singles]
        assert record["std"]["sink"] == pytest.approx(np.std(values), abs=1e-5) and record["n"]["sink"] == 4
        for role, share in record["role_share"].items():
            assert share == sum(role in s[index]["roles"] for s in singles) / 4
    assert body["roles_of"] == "corpus means" and len(body["similarity"]["encoder"]["order"]) == 72


def test_api_corpus_streams_progress_then_the_result(client):
    texts = [f"sentence number {i}." for i in range(70)]
    lines = [line for line in client.post("/api/corpus", json={"texts": texts, "stream": True}).iter_lines() if line]
    import json

    events = [json.loads(line) for line in lines]
    progress = [e for e in events if "done" in e]
    assert [e["done"] for e in progress] == [32, 64, 70] and all(e["total"] == 70 for e in progress)
    assert events[-1]["result"]["sentences"] == 70


def test_api_corpus_limits(client, app):
    limit = app.state.settings.corpus_max_texts
    r = client.post("/api/corpus", json={"texts": ["a"] * (limit + 1)})
    assert r.status_code == 422 and r.json()["error"] == "too_many_texts" and r.json()["limit"] == limit
    r = client.post("/api/corpus", json={"texts": []})
    assert r.status_code == 422
    r = client.post("/api/corpus", json={"texts": ["fine", 3]})
    assert r.status_code == 422 and "texts.1" in r.json()["detail"]


def test_undefined_metrics_are_null_not_nan(client):
    heads = client.post("/api/attention", json={"text": "no repeats here"}).json()["heads"]["encoder"]
    assert all(h["metrics"]["induction"] is None for h in heads)  # nothing repeats: undefined
    assert all(h["metrics"]["punctuation"] is None for h in heads)
    assert all(not math.isnan(v) for h in heads for v in h["metrics"].values() if v is not None)


def test_corpus_spread_role_shares_and_similarity_equal_a_direct_computation(minilm):
    """std (population, over the sentences where a metric is defined), n, the share of sentences on which each
    role fired, and the corpus similarity (Hellinger RMS over every row of every sentence), all from single runs."""
    sums = corpus_sums(minilm, TEXTS[:3]) + corpus_sums(minilm, TEXTS[3:])
    summary = sums.summary()["encoder"]
    singles = [summarize_heads(minilm.analyze(t))["encoder"] for t in TEXTS]
    for index in range(72):
        for metric in METRICS:
            values = np.array([r[index]["metrics"][metric] for r in singles if r[index]["metrics"][metric] is not None])
            assert summary[index]["n"][metric] == len(values)
            if len(values):
                assert summary[index]["std"][metric] == pytest.approx(values.std(), abs=1e-5), (metric, index)
            else:
                assert summary[index]["std"][metric] is None
        for role in ROLES:
            share = sum(role in r[index]["roles"] for r in singles) / len(TEXTS)
            assert summary[index]["role_share"][role] == share, (role, index)
    # Similarity: sqrt(1 - mean over all rows of all sentences of sum_k sqrt(p_k q_k)), in numpy.
    coefficient, rows = np.zeros((72, 72)), 0
    for text in TEXTS:
        P = minilm.analyze(text).patterns["encoder"].numpy().astype(np.float64)  # (6, 12, T, T)
        P = P.reshape(72, *P.shape[2:])  # (72, T, T)
        for a in range(72):
            coefficient[a] += np.sqrt(P[a][None] * P).sum(axis=(1, 2))  # summed over rows and keys, vs every head
        rows += P.shape[1]
    expected = np.sqrt(np.clip(1 - coefficient / rows, 0, 1))
    np.fill_diagonal(expected, 0)
    similarity = sums.similarity()["encoder"]
    np.testing.assert_allclose(np.array(similarity["distance"]), expected, atol=2e-4)
    assert similarity["heads"][:3] == ["L0H0", "L0H1", "L0H2"] and sorted(similarity["order"]) == list(range(72))


def test_a_model_without_bos_has_its_first_token_treated_as_the_sink(smollm2):
    """SmolLM2 puts no BOS: position 0 takes the weight special tokens take elsewhere. Measured (numpy: the mean over
    heads of the weight on key 0 from the text queries after it), said in kind_sinks, and counted as `sink`, so
    first_token stops labelling most heads."""
    from headscope.analyses.detect import repeated_texts
    from headscope.analyses.heads import SINK_SHARE, kind_sinks
    from headscope.analyses.metrics import MIN_KEPT

    analysis = smollm2.analyze(repeated_texts(smollm2, 0, 2, 20)[1])
    a = analysis.patterns["decoder"].double().numpy()  # (L, H, T, T)
    on_first = a[:, :, 1:, 0].mean()  # every query after position 0 sees it
    assert analysis.special[0] is False and on_first >= SINK_SHARE
    assert kind_sinks(analysis) == {"decoder": [0]}
    records = summarize_heads(analysis)["decoder"]
    assert sum("sink" in r["roles"] for r in records) > 100
    assert sum("first_token" in r["roles"] for r in records) < 10
    # previous_token is judged without the sink: keys 1.. kept, rows renormalised (rows keeping < MIN_KEPT left
    # out), over the queries 2.. (those with a kept previous token): R[q, q-1] is kept[:, :, r, r] for r = q - 2
    kept = a[:, :, 2:, 1:]  # (L, H, T-2, T-1)
    mass = kept.sum(-1)  # (L, H, T-2)
    diagonal = np.diagonal(kept, axis1=2, axis2=3) / np.where(mass > 0, mass, 1)  # (L, H, T-2)
    used = mass >= MIN_KEPT
    counted = used.sum(-1)
    previous = np.where(counted > 0, (diagonal * used).sum(-1) / np.maximum(counted, 1), np.nan)  # (L, H)
    ours = np.array([[np.nan if r["metrics"]["previous_token"] is None else r["metrics"]["previous_token"]
                      for r in records[layer * 9:(layer + 1) * 9]] for layer in range(30)])
    np.testing.assert_allclose(ours, previous, atol=1e-5)  # nan (no row kept) where ours is null


def test_models_with_special_tokens_measure_no_extra_sinks(minilm, models):
    from headscope.analyses.heads import kind_sinks

    for model in (minilm, models["induction"]):
        for text in TEXTS:
            assert all(not positions for positions in kind_sinks(model.analyze(text)).values()), (model.info.name, text)
