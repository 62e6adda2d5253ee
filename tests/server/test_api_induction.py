"""The induction model through the API: one causal kind, continuation with `generate`, its limits."""

import numpy as np
import pytest

from headscope.server.encoding import read_safetensors

TEXT = "k#9Qz.m>Ab k#9Qz.m>Ab"


@pytest.fixture(scope="module")
def body(client):
    r = client.post("/api/attention", json={"text": TEXT, "model": "induction"})
    assert r.status_code == 200
    return r.json()


def test_models_lists_induction_as_a_causal_lm(client):
    listing = client.get("/api/models").json()
    assert listing["default"] == "minilm"
    induction = {m["name"]: m for m in listing["models"]}["induction"]
    assert induction["kinds"] == {"decoder": {"rows": "tokens", "columns": "tokens", "causal": True}}
    assert induction["generation"] == "continuation" and induction["default_new_tokens"] == 0
    assert induction["layers"] == 2 and induction["heads"] == 4
    assert induction["max_new_tokens"] == induction["max_tokens"] - 1


def test_layout_tokens_and_causal_patterns(body, models):
    assert body["layout"] == {"decoder": {"rows": "tokens", "columns": "tokens", "causal": True}}
    assert body["tokens"] == ["<s>", *TEXT] and body["generated"] is None
    assert body["offsets"][0] is None and body["offsets"][1] == [0, 1]
    a = np.asarray(body["attention"]["decoder"])
    T = len(body["tokens"])
    assert a.shape == (2, 4, T, T)
    np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-5)
    assert (a[..., np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0).all()
    np.testing.assert_allclose(a, models["induction"].analyze(TEXT).patterns["decoder"].numpy(), atol=1e-7)


def test_heads_find_the_induction_head(body):
    heads = body["heads"]["decoder"]
    assert len(heads) == 8
    best = max(heads, key=lambda h: h["metrics"]["induction"])
    assert best["name"].startswith("L1") and best["metrics"]["induction"] >= 0.5
    assert all(h["metrics"]["next_token"] is None for h in heads)  # hidden under the causal mask


def test_generate_continues_the_text(client, models):
    r = client.post("/api/attention", json={"text": "k#9Qz.m>Ab k#9", "model": "induction", "generate": 5})
    assert r.status_code == 200
    body = r.json()
    n = len(body["tokens"])
    assert n == 1 + 14 + 5
    assert body["generated"] == [False] * 15 + [True] * 5
    assert body["offsets"][-5:] == [None] * 5
    assert np.asarray(body["attention"]["decoder"]).shape == (2, 4, n, n)
    assert body["tokens"][-5:] == models["induction"].analyze("k#9Qz.m>Ab k#9", new_tokens=5).tokens[-5:]


def test_compact_encoding(client, body):
    r = client.post("/api/attention", json={"text": TEXT, "model": "induction", "format": "compact"})
    compact = read_safetensors(r.content)
    np.testing.assert_allclose(compact["attention"]["decoder"], np.asarray(body["attention"]["decoder"]), atol=1 / 510 + 1e-6)


def test_max_new_tokens_is_refused_and_limits_hold(client):
    r = client.post("/api/attention", json={"text": "abc", "model": "induction", "max_new_tokens": 5})
    assert r.status_code == 422 and r.json()["error"] == "not_generating"
    limit = client.get("/api/models").json()["models"][2]["max_tokens"]
    r = client.post("/api/attention", json={"text": "x" * limit, "model": "induction"})
    assert r.status_code == 422 and r.json()["count"] == limit + 1 and r.json()["limit"] == limit
    r = client.post("/api/attention", json={"text": "x" * (limit - 3), "model": "induction", "generate": 5})
    assert r.status_code == 422 and r.json()["count"] == limit + 3
    body = client.post("/api/attention", json={"text": "x" * 300, "model": "induction", "truncate": True, "generate": 5}).json()
    assert body["truncated"] and len(body["tokens"]) == limit and body["generated"].count(True) == 5
