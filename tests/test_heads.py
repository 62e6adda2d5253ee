"""Per-head summaries: corpus averages equal the mean of single runs, through the model and the API."""

import math

import numpy as np
import pytest

from model.heads import CorpusAverage, plan_corpus, summarize_heads
from model.metrics import METRICS

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


def test_corpus_average_equals_the_mean_of_single_runs(minilm):
    average = CorpusAverage()
    batches, errors, _ = plan_corpus(minilm, TEXTS, truncate=False, batch_size=4)
    assert errors == [] and sorted(t for b in batches for t in b) == sorted(TEXTS)
    for batch in batches:  # padded batches of different lengths
        average.add_batch(minilm, batch)
    assert average.sentences == len(TEXTS)
    singles = [summarize_heads(minilm.analyze(t))["encoder"] for t in TEXTS]
    summary = average.summary()["encoder"]
    for metric in METRICS:
        for index in range(72):
            expected = mean_of_single_runs(singles, metric, index)
            got = summary[index]["metrics"][metric]
            if expected is None:
                assert got is None
            else:
                assert got == pytest.approx(expected, abs=2e-6), (metric, index)


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
