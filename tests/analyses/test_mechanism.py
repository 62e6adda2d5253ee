"""headscope/analyses/mechanism.py and POST /api/explain: one head's steps for one query, checked against the model.

The steps are recomputed, never trusted: the weights against the pattern `analyze` returns (1e-6),
the output against the attention module's own forward on the same x (1e-5), q against the module's Q projection
of x, x and q of MiniLM against transformers' hidden states and query projection (1e-4), the scores against the
q ⊙ k rows.
"""

import math

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from headscope.analyses.mechanism import CapturedLayer, NotExplainable, OutOfRange, explain, explain_captured
from headscope.models.analysis import SELF, Analysis, ModelInfo
from headscope.models.attention import MultiHeadAttention
from headscope.models.dates import encode_source
from headscope.models.interventions import capturing
from headscope.server.app import create_app
from headscope.server.settings import Settings

TEXT = "The cat sat on the mat; the cat saw it."
DATE = "Wednesday, the 25th of November 2026"
PATTERN_TOL = 1e-6
OUTPUT_TOL = 1e-5


def module_forward(attn: MultiHeadAttention, e: dict):
    """The attention module's own forward on the explained input: (output (Tq, C), pattern (H, Tq, Tk))."""
    context = None if e["context"] is None else e["context"][None]
    with torch.no_grad():
        out, pattern = attn(e["x"][None], context, causal=e["layout"].causal)
    return out[0], pattern[0]


def check_steps(model, kind, layer, head, query, analysis: Analysis, text: str, new_tokens=None):
    e = explain(model, text, kind, layer, head, query, new_tokens=new_tokens)
    attn = model.attention_modules()[(kind, layer)]
    D, C = e["d_head"], e["d_model"]
    # the weights are the pattern row of the model's own forward pass
    torch.testing.assert_close(e["weights"], analysis.patterns[kind][layer, head, query], atol=PATTERN_TOL, rtol=0)
    # ... and the softmax of the scores, masked keys at exactly 0
    finite = ~e["masked"]
    assert torch.isinf(e["scores"][e["masked"]]).all() and (e["weights"][e["masked"]] == 0).all()
    torch.testing.assert_close(torch.softmax(e["scores"], -1), e["weights"], atol=PATTERN_TOL, rtol=0)
    # q_i ⊙ k_j rows sum to the unscaled scores
    torch.testing.assert_close(e["qk"].sum(-1)[finite] / math.sqrt(D), e["scores"][finite], atol=1e-5, rtol=1e-5)
    # z is the weighted sum of the values, and this head's slice of heads_z
    torch.testing.assert_close(e["z"], e["weights"] @ e["v"], atol=1e-6, rtol=0)
    torch.testing.assert_close(e["heads_z"][head * D:(head + 1) * D], e["z"], atol=0, rtol=0)
    # the output is the module's own output for this query
    out, pattern = module_forward(attn, e)
    torch.testing.assert_close(e["output"], out[query], atol=OUTPUT_TOL, rtol=0)
    # q is the query slice of the Q projection of x_i, written out
    w, b = attn.qkv.weight[head * D:(head + 1) * D], attn.qkv.bias[head * D:(head + 1) * D]
    torch.testing.assert_close(e["q"], e["x"][query] @ w.T + b, atol=1e-5, rtol=0)
    # every array has the shape `shapes` gives
    for name, note in e["shapes"].items():
        assert list(e[name].shape) == note["shape"], name
        assert len(note["axes"]) == len(note["shape"]) and len(note["of_axes"]) == len(note["of_shape"]), name
    assert e["shapes"]["x"]["shape"] == [len(e["query_tokens"]), C]
    assert e["shapes"]["k"]["of_shape"] == [1, e["heads"], len(e["key_tokens"]), D]
    return e, pattern


@pytest.mark.parametrize("layer", range(6))
def test_minilm_every_layer(minilm, layer):
    analysis = minilm.analyze(TEXT)
    T = len(analysis.tokens)
    for head, query in ((0, 0), (5, 3), (11, T - 1)):
        e, pattern = check_steps(minilm, "encoder", layer, head, query, analysis, TEXT)
        assert not e["masked"].any() and e["context"] is None
    # the captured x gives the whole layer's pattern, every head and row
    torch.testing.assert_close(pattern, analysis.patterns["encoder"][layer], atol=PATTERN_TOL, rtol=0)


def test_minilm_x_and_q_equal_transformers(minilm, hf_bert):
    """Independent: transformers' hidden_states[l] is the input of layer l (BERT is post-LN)."""
    model, tokenizer = hf_bert
    ids = tokenizer(TEXT)["input_ids"]
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states  # L + 1 x (1, T, C)
    for layer in range(6):
        e = explain(minilm, TEXT, "encoder", layer, 7, 2)
        torch.testing.assert_close(e["x"], hidden[layer][0], atol=1e-4, rtol=0)
        with torch.no_grad():
            hf_q = model.encoder.layer[layer].attention.self.query(hidden[layer][0])  # (T, C)
        torch.testing.assert_close(e["q"], hf_q[2, 7 * 32:8 * 32], atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", ["encoder", "decoder", "cross"])
def test_dates_every_kind_and_layer(dates, kind):
    analysis = dates.analyze(DATE)
    L, H, Tq, Tk = analysis.patterns[kind].shape
    for layer in range(L):
        for head, query in ((0, 0), (H - 1, Tq // 2), (2, Tq - 1)):
            e, pattern = check_steps(dates, kind, layer, head, query, analysis, DATE)
            expected_mask = torch.arange(Tk) > query if analysis.layout[kind].causal else torch.zeros(Tk, dtype=torch.bool)
            assert torch.equal(e["masked"], expected_mask)
        torch.testing.assert_close(pattern, analysis.patterns[kind][layer], atol=PATTERN_TOL, rtol=0)
    assert e["query_tokens"] == analysis.axis(analysis.layout[kind].rows)
    assert e["key_tokens"] == analysis.axis(analysis.layout[kind].columns)
    assert (e["context"] is not None) == (kind == "cross")
    if kind == "cross":  # keys and values come from the encoder output
        memory, _ = dates.net.encode(torch.tensor([encode_source(DATE)]))
        torch.testing.assert_close(e["context"], memory[0].detach(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("new_tokens", [None, 4])
def test_induction_every_layer_with_and_without_a_continuation(models, new_tokens):
    """The causal model: every step equals its forward, the mask hides later keys, a continuation and
    bytes of a non-ASCII character included."""
    model = models["induction"]
    analysis = model.analyze("k#9Qz é k#9Qz", new_tokens=new_tokens)
    L, H, T, _ = analysis.patterns["decoder"].shape
    for layer in range(L):
        for head, query in ((0, 0), (H - 1, T // 2), (1, T - 1)):
            e, pattern = check_steps(model, "decoder", layer, head, query, analysis, "k#9Qz é k#9Qz", new_tokens)
            assert torch.equal(e["masked"], torch.arange(T) > query)
        torch.testing.assert_close(pattern, analysis.patterns["decoder"][layer], atol=PATTERN_TOL, rtol=0)


def test_padding_masks_keys_like_torch():
    """explain_captured's padding path: -inf scores and weights equal to torch.nn.MultiheadAttention's."""
    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(16, 4, batch_first=True).eval()
    ours = MultiHeadAttention(16, 4).eval()
    with torch.no_grad():
        ref.in_proj_bias.normal_(0, 0.1)
        ours.qkv.weight.copy_(ref.in_proj_weight)
        ours.qkv.bias.copy_(ref.in_proj_bias)
        ours.out_proj.weight.copy_(ref.out_proj.weight)
        ours.out_proj.bias.copy_(ref.out_proj.bias)
        x = torch.randn(1, 7, 16)
        pad = torch.tensor([[False, False, True, False, False, True, True]])
        out, weights = ref(x, x, x, key_padding_mask=pad, average_attn_weights=False)
        with capturing({("encoder", 0): ours}) as records:
            ours_out, _ = ours(x, key_padding_mask=pad)
    captured = CapturedLayer(records[("encoder", 0)][0], x[0], None, ours_out[0], ours.out_proj.weight,
                             ours.out_proj.bias, rotary=False)
    for query in range(7):
        steps = explain_captured(captured, 1, query)
        assert torch.equal(steps["masked"], pad[0]) and torch.isinf(steps["attn_scores"][pad[0]]).all()
        torch.testing.assert_close(steps["pattern"], weights[0, 1, query], atol=1e-6, rtol=0)
        torch.testing.assert_close(steps["output"], out[0, query], atol=1e-6, rtol=0)


@pytest.mark.parametrize("field,kwargs,valid", [
    ("kind", {"kind": "cross"}, ["encoder"]),
    ("layer", {"layer": 6}, [0, 5]),
    ("layer", {"layer": -1}, [0, 5]),
    ("head", {"head": 12}, [0, 11]),
    ("query", {"query": 8}, None),  # filled in below from the token count
])
def test_out_of_range_names_the_valid_range(minilm, field, kwargs, valid):
    args = {"kind": "encoder", "layer": 0, "head": 0, "query": 0, **kwargs}
    text = "The cat sat on it."
    if field == "query":
        valid = [0, minilm.count_tokens(text) - 1]
    with pytest.raises(OutOfRange) as info:
        explain(minilm, text, **args)
    assert info.value.field == field and info.value.valid == valid
    if field != "kind":
        assert f"{valid[0]}..{valid[1]}" in str(info.value)


class Stub:
    """A model whose attention modules cannot be reached."""

    info = ModelInfo(name="stub", description="not ours", layers=1, heads=1, max_tokens=8, kinds={"encoder": SELF})

    def count_tokens(self, text):
        return 1

    def analyze(self, text, truncate=False, new_tokens=None):
        raise AssertionError("explain must refuse before running the model")

    def analyze_batch(self, texts, truncate=False, new_tokens=None):
        return [self.analyze(t) for t in texts]


def test_other_models_are_refused():
    with pytest.raises(NotExplainable, match="attention modules and their output projections can be reached"):
        explain(Stub(), "text", "encoder", 0, 0, 0)


# ---- the API -------------------------------------------------------------------------------------------------


def post(client, **body):
    return client.post("/api/explain", json={"text": TEXT, "model": "minilm", "kind": "encoder", "layer": 2,
                                             "head": 5, "query": 3, **body})


def test_api_answer_has_every_array_with_its_shape(client):
    r = post(client)
    assert r.status_code == 200
    e = r.json()
    for name in ("x", "q", "k", "v", "scores", "weights", "z", "heads_z", "output", "qk"):
        assert list(np.asarray(e[name], dtype=float).shape) == e["shapes"][name]["shape"], name
    assert e["name"] == "L2H5" and e["layout"] == {"rows": "tokens", "columns": "tokens", "causal": False}
    assert e["d_head"] * e["heads"] == e["d_model"] and e["scale"] == pytest.approx(1 / math.sqrt(e["d_head"]))
    assert e["shapes"]["q"]["index"] == "[0, 5, 3]" and e["shapes"]["q"]["of_axes"][-1] == "d_head"


def test_api_weights_equal_the_attention_answer(client):
    attention = client.post("/api/attention", json={"text": TEXT, "model": "minilm"}).json()
    e = post(client).json()
    assert e["query_tokens"] == e["key_tokens"] == attention["tokens"]
    np.testing.assert_allclose(e["weights"], attention["attention"]["encoder"][2][5][3], atol=PATTERN_TOL, rtol=0)
    np.testing.assert_allclose(np.exp(e["scores"]) / np.exp(e["scores"]).sum(), e["weights"], atol=PATTERN_TOL)


def test_api_masked_scores_are_null_and_axes_follow_the_layout(client):
    attention = client.post("/api/attention", json={"text": DATE, "model": "dates"}).json()
    e = client.post("/api/explain", json={"text": DATE, "model": "dates", "kind": "decoder", "layer": 1,
                                          "head": 2, "query": 4}).json()
    assert e["masked"] == [j > 4 for j in range(len(attention["output_tokens"]))]
    assert e["scores"][5:] == [None] * (len(e["scores"]) - 5) and None not in e["scores"][:5]
    assert e["weights"][5:] == [0.0] * (len(e["weights"]) - 5)
    np.testing.assert_allclose(e["weights"], attention["attention"]["decoder"][1][2][4], atol=PATTERN_TOL, rtol=0)
    cross = client.post("/api/explain", json={"text": DATE, "model": "dates", "kind": "cross", "layer": 0,
                                              "head": 0, "query": 2}).json()
    assert cross["query_tokens"] == attention["output_tokens"] and cross["key_tokens"] == attention["tokens"]
    assert np.asarray(cross["context"]).shape == (len(attention["tokens"]), cross["d_model"])
    assert cross["shapes"]["context"]["shape"] == [len(attention["tokens"]), cross["d_model"]]


def test_api_generation_fields_reach_the_model(client):
    e = client.post("/api/explain", json={"text": DATE, "model": "dates", "kind": "decoder", "layer": 0, "head": 0,
                                          "query": 0, "max_new_tokens": 4}).json()
    assert e["query_tokens"] == ["<s>", "2", "0", "2"]
    r = post(client, max_new_tokens=4)
    assert r.status_code == 422 and r.json()["error"] == "not_generating"


@pytest.mark.parametrize("body,field,valid", [
    ({"layer": 6}, "layer", [0, 5]),
    ({"head": -2}, "head", [0, 11]),
    ({"query": 14}, "query", [0, 13]),  # TEXT is 12 WordPiece tokens plus [CLS] and [SEP]
    ({"kind": "decoder"}, "kind", ["encoder"]),
])
def test_api_out_of_range_is_422_naming_the_range(client, minilm, body, field, valid):
    assert minilm.count_tokens(TEXT) == 14
    r = post(client, **body)
    assert r.status_code == 422
    j = r.json()
    assert j["error"] == "out_of_range" and j["field"] == field and j["valid"] == valid
    assert field in j["detail"]


def test_api_other_errors(client):
    assert post(client, model="nope").json()["error"] == "unknown_model"
    assert post(client, layer="1").status_code == 422  # strict: no strings for numbers
    too_long = post(client, text="word " * 600)
    assert too_long.status_code == 422 and too_long.json()["error"] == "too_many_tokens"
    assert post(client, text="word " * 600, truncate=True).status_code == 200


def test_api_refuses_a_model_that_is_not_ours():
    with TestClient(create_app(Settings(), models={"stub": Stub()})) as client:
        r = client.post("/api/explain", json={"text": "x", "kind": "encoder", "layer": 0, "head": 0, "query": 0})
    assert r.status_code == 422 and r.json()["error"] == "not_explainable"
    assert "explain needs a model whose attention modules" in r.json()["detail"]
