"""POST /api/heads and /api/attention with `metrics: false`: the weights first, the metrics next, from
the same forward pass (headscope/server/recent_heads.py)."""

import pytest

from headscope.analyses.heads import summarize_heads
from headscope.server.encoding import read_safetensors
from headscope.server.recent_heads import RecentHeads
from headscope.server.schemas.attention import AttentionResponse, HeadsResponse
from tests.compare import differences

TEXT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture
def forwards(minilm, monkeypatch):
    """The texts of every forward pass MiniLM runs during the test."""
    calls = []
    original = minilm.analyze_batch

    def counting(texts, *args, **kwargs):
        calls.append(list(texts))
        return original(texts, *args, **kwargs)

    monkeypatch.setattr(minilm, "analyze_batch", counting)
    return calls


def test_an_answer_without_metrics_says_so_and_its_metrics_come_next_without_a_second_forward(client, minilm, forwards):
    text = f"{TEXT} (once)"
    r = client.post("/api/attention", json={"text": text, "format": "compact", "metrics": False})
    answer = read_safetensors(r.content)
    assert r.status_code == 200 and answer["heads"] is None and answer["attention"]["encoder"].shape[:2] == (6, 12)
    AttentionResponse.model_validate({**answer, "attention": {}}, strict=False)
    r = client.post("/api/heads", json={"text": text})
    assert r.status_code == 200
    body = HeadsResponse.model_validate(r.json(), strict=False)
    assert forwards == [[text]]  # one forward pass for both answers
    expected = summarize_heads(minilm.analyze(text))  # an independent run
    assert body.model == "minilm" and body.tokens == answer["tokens"] and body.truncated is False
    assert differences(r.json()["heads"]["encoder"], expected["encoder"], rel=1e-6) == []
    assert [h["roles"] for h in r.json()["heads"]["encoder"]] == [h["roles"] for h in expected["encoder"]]


def test_heads_alone_runs_the_model_and_equals_the_attention_answers_heads(client, forwards):
    text = f"{TEXT} (alone)"
    heads = client.post("/api/heads", json={"text": text}).json()
    assert forwards == [[text]]
    assert heads["heads"] == client.post("/api/attention", json={"text": text}).json()["heads"]


def test_the_metrics_kept_are_those_of_the_same_request(client, minilm, forwards):
    long = "word " * 600
    client.post("/api/attention", json={"text": long, "truncate": True, "format": "compact", "metrics": False})
    assert len(forwards) == 1
    cut = client.post("/api/heads", json={"text": long, "truncate": True}).json()
    assert len(forwards) == 1 and cut["truncated"] is True and len(cut["tokens"]) == minilm.info.max_tokens
    r = client.post("/api/heads", json={"text": long})  # not the same request: refused as /api/attention is
    assert r.status_code == 422 and r.json()["error"] == "too_many_tokens"


def test_heads_refuses_what_attention_refuses(client):
    assert client.post("/api/heads", json={"text": "hi", "model": "nope"}).json()["error"] == "unknown_model"
    assert client.post("/api/heads", json={"text": " "}).status_code == 422
    assert client.post("/api/heads", json={"text": "hi", "format": "compact"}).status_code == 422  # no such field


def test_recent_heads_keeps_the_latest_only():
    recent = RecentHeads(kept=2, size=2)
    for key in "abc":
        recent.put(key, {"heads": key})
    recent.put("b", {"heads": "b again"})
    assert recent.get("a") is None and recent.get("b") == {"heads": "b again"} and recent.get("c") == {"heads": "c"}
    recent.put("d", {})
    assert list(recent.entries) == ["b", "d"]


def test_recent_heads_computes_once_on_demand_and_keeps_few_forward_passes():
    recent = RecentHeads(kept=2, size=8)
    computed = []

    def compute(key):
        return lambda: computed.append(key) or {"heads": key}

    for key in "abc":
        recent.keep(key, compute(key))
    assert computed == [] and recent.get("a") is None  # the oldest forward pass was let go
    assert recent.get("b") == recent.get("b") == {"heads": "b"} and computed == ["b"]  # computed once
    recent.keep("d", compute("d"))
    assert list(recent.entries) == ["b", "c", "d"]  # b is computed: it does not count as a kept forward pass


def test_the_metrics_of_an_ablated_answer_are_the_ablated_runs(client, minilm):
    text = f"{TEXT} (ablated)"
    ablate = {"ablate": [{"kind": "encoder", "layer": 0, "head": h} for h in range(12)], "ablation": "zero"}
    client.post("/api/attention", json={"text": text, "format": "compact", "metrics": False, **ablate})
    ablated = client.post("/api/heads", json={"text": text, **ablate}).json()["heads"]["encoder"]
    plain = client.post("/api/heads", json={"text": text}).json()["heads"]["encoder"]
    expected = client.post("/api/attention", json={"text": text, **ablate}).json()["heads"]["encoder"]
    assert differences(ablated, expected, rel=1e-6) == []
    later = slice(12, None)  # layer 0's own patterns stay; every later layer reads a different input
    assert differences(ablated[later], plain[later], rel=1e-3) != []
