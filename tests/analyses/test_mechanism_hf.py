"""POST /api/explain and headscope/analyses/mechanism.py for transformers checkpoints: the steps of one head, recomputed from
the module's captured q, k, v, checked against the model's own numbers.

For every family (tiny checkpoints from tests/checkpoints.py build()): the weights equal transformers' attention
row (1e-6) and softmax(scores + mask) (1e-6); the scores equal q_i · k_j · scale + position bias; z is the
weighted sum of the values; the output equals what the family's own output projection (named per family in
tests/models/test_interventions.py, hooked here) returned in the forward pass. Per family: q is the family's Q projection
of x (BERT, GPT-2, BART, T5), or that projection rotated pair by pair (Llama: norms of the rotated pairs kept);
Llama's heads share key/value groups; T5's bias is its relative attention bias and its scale 1.
"""

import math

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from headscope.analyses.mechanism import explain
from headscope.models.hf.model import HFModel
from headscope.server.app import create_app
from headscope.server.settings import Settings
from tests.checkpoints import build
from tests.models.test_interventions import output_projection

TEXT = "The cat sat on the mat."
FAMILIES = ("bert", "gpt2", "llama", "t5", "bart")
NEW_TOKENS = {"gpt2": 2, "llama": 2, "t5": 5, "bart": 5}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    torch.set_num_threads(1)
    out = {}
    for family in FAMILIES:
        tokenizer, original = build(family)
        path = tmp_path_factory.mktemp(family)
        original.save_pretrained(path)
        tokenizer.save_pretrained(path)
        out[family] = HFModel.load(f"tiny-{family}", path)
    return out


def query_projection(net, family: str, kind: str, layer: int, x: torch.Tensor) -> torch.Tensor:
    """The family's own Q projection of x, all heads: (Tq, H·D)."""
    if family == "bert":
        return net.encoder.layer[layer].attention.self.query(x)
    if family == "gpt2":
        return net.transformer.h[layer].attn.c_attn(x)[:, : net.config.n_embd]
    if family == "llama":
        return net.model.layers[layer].self_attn.q_proj(x)
    if family == "bart":
        stack = net.model.encoder if kind == "encoder" else net.model.decoder
        block = stack.layers[layer]
        return (block.encoder_attn if kind == "cross" else block.self_attn).q_proj(x)
    stack = net.encoder if kind == "encoder" else net.decoder
    part = stack.block[layer].layer[1 if kind == "cross" else 0]
    return (part.EncDecAttention if kind == "cross" else part.SelfAttention).q(x)


def check(model, family, kind, layer, head, query):
    net = model.net
    projection, _ = output_projection(net, family, kind, layer)
    seen = []
    hook = projection.register_forward_hook(lambda m, args, out: seen.append(out[0]))
    try:
        e = explain(model, TEXT, kind, layer, head, query, new_tokens=NEW_TOKENS.get(family))
    finally:
        hook.remove()
    analysis = model.analyze(TEXT, new_tokens=NEW_TOKENS.get(family))
    row = analysis.patterns[kind][layer, head, query]
    torch.testing.assert_close(e["weights"], row, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.softmax(e["scores"], -1), row, atol=1e-6, rtol=0)
    assert (e["weights"][e["masked"]] == 0).all() and torch.isinf(e["scores"][e["masked"]]).all()
    if analysis.layout[kind].causal:
        assert torch.equal(e["masked"], torch.arange(len(row)) > query)
    finite = ~e["masked"]
    expected_scores = e["qk"].sum(-1) * e["scale"]
    if e["position_bias"] is not None:
        expected_scores = expected_scores + e["position_bias"]
    big = float(e["scores"][finite].abs().max())
    torch.testing.assert_close(e["scores"][finite], expected_scores[finite], atol=1e-5 * max(1, big), rtol=1e-5)
    D = e["d_head"]
    torch.testing.assert_close(e["z"], e["weights"] @ e["v"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(e["heads_z"][head * D:(head + 1) * D], e["z"], atol=0, rtol=0)
    # concat(z) @ W_Oᵀ + b is what the family's own output projection returned for this query
    out = seen[-1][query]
    torch.testing.assert_close(e["output"], out, atol=1e-5 * max(1.0, float(out.abs().max())), rtol=1e-5)
    # q is the family's Q projection of x (rotated, for Llama)
    with torch.no_grad():
        raw = query_projection(net, family, kind, layer, e["x"])[query, head * D:(head + 1) * D]
    if e["rotary"]:
        half = D // 2
        torch.testing.assert_close(e["q"][:half] ** 2 + e["q"][half:] ** 2, raw[:half] ** 2 + raw[half:] ** 2,
                                   atol=1e-4, rtol=1e-4)
        if query > 0:
            assert not torch.allclose(e["q"], raw, atol=1e-3)  # position query > 0 is rotated
    else:
        torch.testing.assert_close(e["q"], raw, atol=1e-5, rtol=1e-5)
    for name, note in e["shapes"].items():
        assert list(e[name].shape) == note["shape"], (family, name)
    assert e["query_tokens"] == analysis.axis(analysis.layout[kind].rows)
    assert e["key_tokens"] == analysis.axis(analysis.layout[kind].columns)
    return e


@pytest.mark.parametrize("family", FAMILIES)
def test_every_kind_of_every_family_explains_consistently(served, family):
    model = served[family]
    for kind in model.info.kinds:
        for layer, head, query in ((0, 0, 0), (1, 3, 2), (1, 1, 4)):
            e = check(model, family, kind, layer, head, query)
            assert (e["context"] is not None) == (model.info.kinds[kind].rows != model.info.kinds[kind].columns)


def test_llama_notes_rotary_and_query_heads_reading_their_group(served):
    model = served["llama"]
    e = check(model, "llama", "decoder", 1, 3, 4)
    assert e["rotary"] and e["kv_heads"] == 2 and e["kv_group"] == 1 and e["kv_group_heads"] == [2, 3]
    assert e["biases"] == {"qkv": False, "output": False}  # Llama's projections have none
    assert check(served["bert"], "bert", "encoder", 0, 0, 0)["biases"] == {"qkv": True, "output": True}
    assert any("rotary" in n for n in e["notes"]) and any("grouped-query" in n for n in e["notes"])
    other = explain(model, TEXT, "decoder", 1, 2, 4, new_tokens=2)
    torch.testing.assert_close(other["k"], e["k"], atol=0, rtol=0)  # heads 2 and 3 share group 1
    assert not torch.allclose(other["q"], e["q"])
    assert e["shapes"]["k"]["of_shape"][1] == 2 and e["shapes"]["k"]["index"] == "[0, 1]"


def test_t5_adds_its_relative_position_bias_and_does_not_scale(served):
    model = served["t5"]
    net = model.net
    e = check(model, "t5", "encoder", 1, 2, 3)
    assert e["scale"] == 1.0 and any("position bias" in n for n in e["notes"])
    T = len(e["key_tokens"])
    with torch.no_grad():
        bias = net.encoder.block[0].layer[0].SelfAttention.compute_bias(T, T)  # (1, H, T, T), shared by every layer
    torch.testing.assert_close(e["position_bias"], bias[0, 2, 3], atol=1e-6, rtol=0)
    d = check(model, "t5", "decoder", 0, 1, 3)
    with torch.no_grad():
        bias = net.decoder.block[0].layer[0].SelfAttention.compute_bias(len(d["query_tokens"]), len(d["key_tokens"]))
    finite = ~d["masked"]
    torch.testing.assert_close(d["position_bias"][finite], bias[0, 1, 3][finite], atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def hf_client(served):
    with TestClient(create_app(Settings(), models={f"tiny-{f}": m for f, m in served.items()})) as client:
        yield client


@pytest.mark.parametrize("family", FAMILIES)
def test_api_explains_checkpoints_and_equals_the_attention_answer(hf_client, served, family):
    body = {"text": TEXT, "model": f"tiny-{family}"}
    if family in NEW_TOKENS:
        body["generate" if family in ("gpt2", "llama") else "max_new_tokens"] = NEW_TOKENS[family]
    attention = hf_client.post("/api/attention", json=body).json()
    kind = list(served[family].info.kinds)[-1]
    r = hf_client.post("/api/explain", json={**body, "kind": kind, "layer": 1, "head": 2, "query": 2})
    assert r.status_code == 200, r.text
    e = r.json()
    np.testing.assert_allclose(e["weights"], attention["attention"][kind][1][2][2], atol=1e-6, rtol=0)
    scores = np.array([-np.inf if s is None else s for s in e["scores"]])
    np.testing.assert_allclose(np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum(), e["weights"],
                               atol=1e-6)
    for name in ("x", "q", "k", "v", "scores", "weights", "z", "heads_z", "output", "qk"):
        assert list(np.asarray(e[name], dtype=float).shape) == e["shapes"][name]["shape"], name
    assert e["notes"] and e["kv_heads"] == (2 if family == "llama" else 4)
    assert math.isclose(e["scale"], 1.0 if family == "t5" else 8 ** -0.5, rel_tol=1e-6)


def test_api_out_of_range_for_a_checkpoint_names_the_range(hf_client):
    body = {"text": TEXT, "model": "tiny-bert", "kind": "encoder", "layer": 2, "head": 0, "query": 0}
    r = hf_client.post("/api/explain", json=body)
    assert r.status_code == 422 and r.json()["valid"] == [0, 1] and r.json()["field"] == "layer"
    r = hf_client.post("/api/explain", json={**body, "layer": 0, "query": 99})
    assert r.status_code == 422 and r.json()["field"] == "query"


@pytest.mark.parametrize("family", ["llama", "t5"])
def test_api_value_norms_and_rollout_of_checkpoints(hf_client, served, family):
    """/api/attention on a checkpoint: value norms equal headscope/analyses/value_norm.py's (itself against numpy from
    transformers in tests/analyses/test_value_norm.py); rollout for the kinds whose rows and columns are one sequence."""
    from headscope.analyses.value_norm import value_norms

    body = {"text": TEXT, "model": f"tiny-{family}", "weights": "value_norm", "rollout": True, "format": "safetensors"}
    body["generate" if family == "llama" else "max_new_tokens"] = NEW_TOKENS[family]
    r = hf_client.post("/api/attention", json=body)
    assert r.status_code == 200, r.text
    from headscope.server.encoding import read_safetensors

    a = read_safetensors(r.content)
    _, norms = value_norms(served[family], TEXT, new_tokens=NEW_TOKENS[family])
    for kind, norm in norms.items():
        np.testing.assert_allclose(a["attention"][kind], norm.numpy(), atol=1e-6, rtol=1e-6)
    kinds = served[family].info.kinds
    assert set(a["rollout"]) == {k for k, lay in kinds.items() if lay.rows == lay.columns}
    assert a["weights"]["rows_sum_to_one"] is False
