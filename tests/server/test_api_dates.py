"""The dates model through the API: all three attention kinds with the right axes."""

import numpy as np
import pytest

from headscope.server.encoding import read_safetensors

TEXT = "Wednesday, the 25th of November 2026"


@pytest.fixture(scope="module")
def body(client):
    r = client.post("/api/attention", json={"text": TEXT, "model": "dates"})
    assert r.status_code == 200
    return r.json()


def test_models_lists_dates_with_three_kinds(client):
    dates = {m["name"]: m for m in client.get("/api/models").json()["models"]}["dates"]
    assert dates["kinds"] == {
        "encoder": {"rows": "tokens", "columns": "tokens", "causal": False},
        "decoder": {"rows": "output_tokens", "columns": "output_tokens", "causal": True},
        "cross": {"rows": "output_tokens", "columns": "tokens", "causal": False},
    }
    assert dates["max_tokens"] == 64 and dates["heads"] == 4
    assert dates["generation"] == "output" and dates["max_new_tokens"] == 12


def test_output_and_token_lists(body):
    assert body["output_text"] == "2026-11-25"
    assert body["tokens"] == ["<s>", *TEXT, "</s>"]
    assert body["output_tokens"] == ["<s>", *"2026-11-25"]
    assert body["output_special"] == [True] + [False] * 10 and body["stopped"] == "end"
    assert body["layout"]["cross"] == {"rows": "output_tokens", "columns": "tokens", "causal": False}
    assert body["offsets"][1] == [0, 1] and body["offsets"][0] is None


def test_each_kind_has_the_documented_shape_and_rows_sum_to_one(body, dates):
    L, H = dates.net.config.decoder_layers, dates.net.config.heads
    n_in, n_out = len(body["tokens"]), len(body["output_tokens"])
    shapes = {"encoder": (dates.net.config.encoder_layers, H, n_in, n_in), "decoder": (L, H, n_out, n_out),
              "cross": (L, H, n_out, n_in)}
    for kind, shape in shapes.items():
        a = np.asarray(body["attention"][kind])
        assert a.shape == shape, kind
        np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-5)
    decoder = np.asarray(body["attention"]["decoder"])
    assert (decoder[..., np.triu_indices(n_out, 1)[0], np.triu_indices(n_out, 1)[1]] == 0).all()  # exactly zero


def test_api_numbers_equal_the_model(body, dates):
    analysis = dates.analyze(TEXT)
    for kind, pattern in analysis.patterns.items():
        # 1e-6: the server runs the model on its own thread, where PyTorch may split a sum differently (a few
        # float32 roundings; seen 2.7e-7 once in a full run)
        np.testing.assert_allclose(np.asarray(body["attention"][kind]), pattern.numpy(), rtol=0, atol=1e-6)


def test_heads_per_kind_with_causal_aware_metrics(body):
    heads = body["heads"]
    assert set(heads) == {"encoder", "decoder", "cross"}
    assert len(heads["cross"]) == 12
    assert all(h["metrics"]["next_token"] is None for h in heads["decoder"])  # hidden under the causal mask
    assert all(h["metrics"]["distance"] is None for h in heads["cross"])  # two sequences: no |i - j|


def test_compact_and_similarity_for_three_kinds(client):
    r = client.post("/api/attention", json={"text": "5.3.1999", "model": "dates", "format": "compact",
                                            "similarity": True})
    body = read_safetensors(r.content)
    exact = client.post("/api/attention", json={"text": "5.3.1999", "model": "dates"}).json()["attention"]
    assert set(body["attention"]) == {"encoder", "decoder", "cross"}
    assert body["attention"]["cross"].shape == (3, 4, len(body["output_tokens"]), len(body["tokens"]))
    for kind in ("encoder", "decoder", "cross"):
        np.testing.assert_allclose(body["attention"][kind], np.asarray(exact[kind]), atol=1 / 510 + 1e-6)
    assert len(body["similarity"]["decoder"]["distance"]) == 12


def test_untrained_input_still_answers_and_length_is_enforced(client):
    body = client.post("/api/attention", json={"text": "hello, world ✓", "model": "dates"}).json()
    assert body["output_text"] and "<unk>" in body["tokens"]
    r = client.post("/api/attention", json={"text": "x" * 63, "model": "dates"})
    assert r.status_code == 422 and r.json()["count"] == 65 and r.json()["limit"] == 64
    body = client.post("/api/attention", json={"text": "25/11/2026 " + "x" * 60, "model": "dates", "truncate": True}).json()
    assert body["truncated"] and len(body["tokens"]) == 64


def test_corpus_on_the_dates_model(client):
    body = client.post("/api/corpus", json={"texts": ["25/11/2026", "1 May 1950", "x" * 70], "model": "dates"}).json()
    assert body["sentences"] == 2 and body["errors"][0]["index"] == 2
    assert set(body["heads"]) == {"encoder", "decoder", "cross"}


@pytest.mark.parametrize(("text", "output", "valid"), [
    ("31/02/2024", "2024-02-31", False),  # no such day: the model still answers, the flag says so
    ("hello", None, False),
    ("  12 May 2000 ", "2000-05-12", True),  # surrounding spaces are not read
    ("25 November 2026", "2026-11-25", True),
])
def test_output_probabilities_and_validity(client, text, output, valid):
    body = client.post("/api/attention", json={"text": text, "model": "dates"}).json()
    if output is not None:
        assert body["output_text"] == output
    check = body["output_check"]
    assert check["name"] == "valid date" and check["ok"] is valid
    assert check["label"] == ("valid date" if valid else "not a valid date")
    probs = body["output_probs"]
    assert len(probs) == len(body["output_tokens"]) and all(0 < p <= 1 for p in probs)


def test_whitespace_around_the_date_keeps_offsets_into_the_text_as_sent(client):
    text = "  12 May 2000 "
    body = client.post("/api/attention", json={"text": text, "model": "dates"}).json()
    assert body["tokens"] == ["<s>", *"12 May 2000", "</s>"]
    assert [text[a:b] for a, b in body["offsets"][1:-1]] == list("12 May 2000")
