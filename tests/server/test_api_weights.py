"""POST /api/attention with `weights: value_norm` and `rollout: true`, in every format.

The numbers are checked against headscope/analyses/value_norm.py (itself checked against numpy from transformers in
tests/analyses/test_value_norm.py) and against a numpy rollout of the answer's own attention weights; exact
formats to 1e-6, compact to its stated 8-bit bound (scale / 510).
"""

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from headscope.analyses.value_norm import value_norms
from headscope.models.analysis import SELF, ModelInfo
from headscope.server.app import create_app
from headscope.server.encoding import read_safetensors
from headscope.server.schemas.attention import AttentionResponse
from headscope.server.settings import Settings
from tests.analyses.test_value_norm import numpy_rollout

TEXT = "The keys to the cabinet are on the table."
DATE = "2 March 1999"


def answer(client, fmt="json", **body):
    r = client.post("/api/attention", json={"text": TEXT, "model": "minilm", "format": fmt, **body})
    assert r.status_code == 200, r.text
    if fmt == "json":
        AttentionResponse.model_validate_json(r.content)
        return r.json()
    n = int.from_bytes(r.content[:8], "little")
    metadata = {k: json.loads(v) for k, v in json.loads(r.content[8:8 + n])["__metadata__"].items()}
    AttentionResponse.model_validate(metadata, strict=False)
    return read_safetensors(r.content)


@pytest.mark.parametrize("fmt", ["json", "safetensors", "compact"])
def test_value_norms_replace_the_attention_arrays_and_say_so(client, minilm, fmt):
    a = answer(client, fmt, weights="value_norm")
    _, norms = value_norms(minilm, TEXT)
    got, expected = np.asarray(a["attention"]["encoder"], dtype=np.float32), norms["encoder"].numpy()
    if fmt == "compact":
        bound = expected.max(axis=(-2, -1), keepdims=True) / 510 + 1e-6
        assert (np.abs(got - expected) <= bound).all()
    else:
        np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
    about = a["weights"]
    assert about["name"] == "value_norm" and about["rows_sum_to_one"] is False and "Kobayashi" in about["description"]
    assert about["max"]["encoder"] == pytest.approx(float(expected.max()), rel=1e-6)
    assert np.abs(got.sum(-1) - 1).max() > 0.5  # not probabilities
    assert a["rollout"] is None and a["rollout_about"] is None


def test_attention_answers_say_they_hold_probabilities(client):
    a = answer(client)
    assert a["weights"]["name"] == "attention" and a["weights"]["rows_sum_to_one"] is True
    assert a["weights"]["units"] == "probability"
    np.testing.assert_allclose(np.asarray(a["attention"]["encoder"]).sum(-1), 1, atol=1e-5)


def test_metrics_stay_those_of_the_attention_weights(client):
    plain, norms = answer(client), answer(client, weights="value_norm")
    assert plain["heads"] == norms["heads"]


@pytest.mark.parametrize("fmt", ["json", "safetensors", "compact"])
def test_rollout_is_numpys_rollout_of_the_answers_attention(client, fmt):
    a = answer(client, fmt, rollout=True)
    exact = answer(client, "json")  # the float weights, for the reference
    expected = numpy_rollout(np.asarray(exact["attention"]["encoder"]))
    np.testing.assert_allclose(np.asarray(a["rollout"]["encoder"]), expected, rtol=1e-5, atol=1e-6)
    assert a["rollout_about"]["kinds"] == ["encoder"] and a["rollout_about"]["dims"] == ["query_pos", "key_pos"]


def test_rollout_of_an_encoder_decoder_skips_cross_attention_and_says_what_it_leaves_out(client):
    r = client.post("/api/attention", json={"text": DATE, "model": "dates", "rollout": True, "weights": "value_norm"})
    a = r.json()
    about = a["rollout_about"]
    assert set(a["rollout"]) == set(about["kinds"]) == {"encoder", "decoder"}
    assert about["skipped"] == {"cross": "its rows and columns are different tokens"}
    assert about["not_counted"] == {"decoder": ["cross"]}
    assert np.asarray(a["rollout"]["decoder"]).shape == (len(a["output_tokens"]),) * 2
    assert np.asarray(a["attention"]["cross"]).shape[2:] == (len(a["output_tokens"]), len(a["tokens"]))


def test_one_head_and_pooling_apply_to_value_norms_and_rollout(client):
    full = answer(client, "safetensors", weights="value_norm")
    one = answer(client, "safetensors", weights="value_norm", head={"kind": "encoder", "layer": 3, "head": 7})
    np.testing.assert_array_equal(one["attention"]["encoder"][0, 0], full["attention"]["encoder"][3, 7])
    pooled = answer(client, "safetensors", rollout=True, pool_to=8, text="word " * 20)
    block = pooled["rollout_about"]["pool"]["encoder"]
    assert block == pooled["pool"]["encoder"] == [3, 3]
    assert pooled["rollout"]["encoder"].shape == (8, 8) and pooled["rollout_about"]["rows_sum_to_one"] is False
    assert answer(client, rollout=True)["rollout_about"]["rows_sum_to_one"] is True


def test_every_builtin_model_answers_value_norms_and_rollout(client, models):
    for name, model in [(n, m) for n, m in models.items() if m.info.takes == "text"]:  # digits: tests/server/test_api_images.py
        r = client.post("/api/attention", json={"text": model.info.example, "model": name, "format": "compact",
                                                "weights": "value_norm", "rollout": True})
        assert r.status_code == 200, (name, r.text)
        a = read_safetensors(r.content)
        assert a["weights"]["name"] == "value_norm"
        assert set(a["rollout"]) == {k for k, lay in model.info.kinds.items() if lay.rows == lay.columns}


class Unreachable:
    """A model whose attention modules cannot be reached (a transformers family outside the attention interface)."""

    info = ModelInfo(name="stub", description="not reachable", layers=1, heads=1, max_tokens=8, kinds={"encoder": SELF})

    def count_tokens(self, text):
        return 1

    def attention_modules(self):
        raise NotImplementedError("its attention does not run through transformers' attention interface")

    def analyze(self, text, truncate=False, new_tokens=None):
        raise AssertionError("the request must be refused before the model runs")

    def analyze_batch(self, texts, truncate=False, new_tokens=None):
        return [self.analyze(t) for t in texts]


def test_a_model_without_reachable_modules_gets_422_naming_why():
    with TestClient(create_app(Settings(), models={"stub": Unreachable()})) as client:
        r = client.post("/api/attention", json={"text": "x", "weights": "value_norm"})
        assert r.status_code == 422 and r.json()["error"] == "no_value_norms"
        assert "attention interface" in r.json()["detail"]
        r = client.post("/api/attention", json={"text": "x", "weights": "probability"})
        assert r.status_code == 422 and r.json()["error"] == "validation_error"
