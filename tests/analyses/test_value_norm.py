"""headscope/analyses/value_norm.py and headscope/analyses/rollout.py against independent numpy computations.

Value norms: from transformers' own hidden states, attention weights and weight matrices (MiniLM
through the hf_bert fixture), and for tiny checkpoints of several families from the values their V
projections output in transformers' own forward pass and the output projection named per family in
tests/models/test_interventions.py, all in numpy float64. Rollout: a plain numpy loop over transformers'
attentions. Tolerances: 1e-5 relative (float32 sums in a different order), 1e-6 absolute.
"""

import copy

import numpy as np
import pytest
import torch

from headscope.analyses.rollout import (
    not_counted,
    rollout,
    rollout_about,
    rollout_kinds,
    rollouts,
)
from headscope.analyses.value_norm import NoValueNorms, value_norms
from headscope.models.analysis import CAUSAL_SELF, CROSS, DECODER_SELF, SELF
from headscope.models.hf.model import HFModel
from tests.checkpoints import build
from tests.conftest import hf_attention
from tests.models.test_interventions import output_projection

TEXT = "The keys to the cabinet are on the table."
RTOL, ATOL = 1e-5, 1e-6


def numpy_rollout(attentions: np.ndarray) -> np.ndarray:
    """(L, H, T, T) -> (T, T), written out as the paper says."""
    T = attentions.shape[-1]
    result = np.eye(T)
    for layer in attentions.astype(np.float64):
        a = 0.5 * layer.mean(axis=0) + 0.5 * np.eye(T)
        a = a / a.sum(axis=-1, keepdims=True)
        result = a @ result
    return result


def numpy_value_norms(attention: np.ndarray, values: np.ndarray, w_out: np.ndarray) -> np.ndarray:
    """attention (H, Tq, Tk); values (Tk, H_kv·D) as the V projection made them; w_out (C, H·D) as nn.Linear
    holds it. -> (H, Tq, Tk) of α_ij ‖v_j^h W_O^hᵀ‖."""
    H = attention.shape[0]
    D = w_out.shape[1] // H
    kv_heads = values.shape[1] // D
    out = np.empty(attention.shape)
    for h in range(H):
        g = h // (H // kv_heads)
        f = values[:, g * D:(g + 1) * D].astype(np.float64) @ w_out[:, h * D:(h + 1) * D].T.astype(np.float64)  # (Tk, C)
        out[h] = attention[h].astype(np.float64) * np.linalg.norm(f, axis=1)[None, :]
    return out


# ---- MiniLM against transformers' BertModel -----------------------------------------------------------------

def test_minilm_value_norms_equal_numpy_from_transformers(minilm, hf_bert):
    model, tokenizer = hf_bert
    analysis, norms = value_norms(minilm, TEXT)
    tokens, attentions = hf_attention(hf_bert, TEXT)
    assert analysis.tokens == tokens
    ids = torch.tensor([tokenizer(TEXT)["input_ids"]])
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states  # L + 1 x (1, T, C)
    for layer in range(6):
        attention = model.encoder.layer[layer].attention
        x = hidden[layer][0].numpy().astype(np.float64)  # BERT is post-LN: the layer's input is the residual stream
        values = x @ attention.self.value.weight.detach().numpy().T + attention.self.value.bias.detach().numpy()
        expected = numpy_value_norms(attentions[layer].numpy(), values, attention.output.dense.weight.detach().numpy())
        np.testing.assert_allclose(norms["encoder"][layer].numpy(), expected, rtol=1e-4, atol=1e-5)
    assert norms["encoder"].shape == analysis.patterns["encoder"].shape
    sums = norms["encoder"].sum(-1)
    assert (sums - 1).abs().max() > 0.5  # norms are not probabilities: rows do not sum to 1


def test_minilm_rollout_equals_numpy_from_transformers(minilm, hf_bert):
    analysis = minilm.analyze(TEXT)
    _, attentions = hf_attention(hf_bert, TEXT)
    ours = rollouts(analysis.patterns, analysis.layout)["encoder"].numpy()
    np.testing.assert_allclose(ours, numpy_rollout(attentions.numpy()), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(ours.sum(-1), 1, atol=1e-5)
    assert not np.allclose(ours, np.eye(len(ours)), atol=0.05)  # information did move


def test_every_builtin_model_has_value_norms_of_its_patterns_shape(models):
    for model in [m for m in models.values() if m.info.takes == "text"]:  # digits: tests/models/test_digits.py
        analysis, norms = value_norms(model, model.info.example)
        assert set(norms) == set(analysis.patterns)
        for kind, norm in norms.items():
            assert norm.shape == analysis.patterns[kind].shape and norm.dtype == torch.float32
            assert bool((norm >= 0).all())
            assert bool((norm[analysis.patterns[kind] == 0] == 0).all())  # masked keys carry nothing


def test_dates_cross_value_norms_use_the_encoder_output_values(dates):
    """Cross-attention: the values are the encoder memory's, through the cross module's own W_V and W_O."""
    analysis, norms = value_norms(dates, "2 March 1999")
    from headscope.models.dates import encode_source

    net = dates.net
    with torch.no_grad():
        memory, _ = net.encode(torch.tensor([encode_source("2 March 1999")]))  # (1, S, C)
        for layer, block in enumerate(net.decoder):
            attn = block.cross_attn
            C = attn.width
            w, b = attn.qkv.weight[2 * C:], attn.qkv.bias[2 * C:]
            values = (memory[0] @ w.T + b).numpy()
            expected = numpy_value_norms(analysis.patterns["cross"][layer].numpy(), values, attn.out_proj.weight.numpy())
            np.testing.assert_allclose(norms["cross"][layer].numpy(), expected, rtol=1e-4, atol=1e-5)


def test_rollout_of_a_causal_kind_stays_causal_and_rows_sum_to_one(models):
    model = models["induction"]
    analysis = model.analyze("abcab abcab")
    r = rollouts(analysis.patterns, analysis.layout)["decoder"]
    assert bool((r.triu(1) == 0).all())
    torch.testing.assert_close(r.sum(-1), torch.ones(r.shape[0]), atol=1e-5, rtol=0)
    np.testing.assert_allclose(r.numpy(), numpy_rollout(analysis.patterns["decoder"].numpy()), rtol=RTOL, atol=ATOL)


def test_rollout_kinds_come_from_the_layout():
    layout = {"encoder": SELF, "decoder": DECODER_SELF, "cross": CROSS}
    assert rollout_kinds(layout) == ["encoder", "decoder"]
    assert not_counted(layout, "decoder") == ["cross"] and not_counted(layout, "encoder") == []
    about = rollout_about(layout)
    assert about["skipped"] == {"cross": "its rows and columns are different tokens"}
    assert about["not_counted"] == {"decoder": ["cross"]}
    assert rollout_kinds({"x": CAUSAL_SELF}) == ["x"]


def test_rollout_of_one_layer_is_half_attention_half_identity():
    torch.manual_seed(0)
    pattern = torch.softmax(torch.randn(1, 3, 5, 5), -1)
    expected = 0.5 * pattern.mean(1)[0] + 0.5 * torch.eye(5)
    torch.testing.assert_close(rollout(pattern), expected, atol=1e-6, rtol=0)


class NoModules:
    class info:  # noqa: N801 - stands in for a ModelInfo
        name = "stub"

    def attention_modules(self):
        raise NotImplementedError("not reachable")


def test_a_model_without_reachable_modules_says_so():
    with pytest.raises(NoValueNorms, match="stub"):
        value_norms(NoModules(), "text")


# ---- transformers checkpoints of several families -------------------------------------------------------------

def value_projection(model, family: str, kind: str, layer: int):
    """The layer whose output holds the values (all heads), and the slice of its output that is V."""
    if family == "bert":
        return model.encoder.layer[layer].attention.self.value, slice(None)
    if family == "gpt2":
        C = model.config.n_embd
        return model.transformer.h[layer].attn.c_attn, slice(2 * C, 3 * C)  # Conv1D: q, k, v side by side
    if family == "llama":
        return model.model.layers[layer].self_attn.v_proj, slice(None)
    if family == "bart":
        stack = model.model.encoder if kind == "encoder" else model.model.decoder
        block = stack.layers[layer]
        return (block.encoder_attn if kind == "cross" else block.self_attn).v_proj, slice(None)
    if family == "t5":
        stack = model.encoder if kind == "encoder" else model.decoder
        part = stack.block[layer].layer[1 if kind == "cross" else 0]
        return (part.EncDecAttention if kind == "cross" else part.SelfAttention).v, slice(None)
    raise ValueError(family)


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    torch.set_num_threads(1)
    out = {}
    for family in ("bert", "gpt2", "llama", "t5", "bart"):
        tokenizer, original = build(family)
        path = tmp_path_factory.mktemp(family)
        original.save_pretrained(path)
        tokenizer.save_pretrained(path)
        out[family] = (tokenizer, HFModel.load(f"tiny-{family}", path))
    return out


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama", "t5", "bart"])
def test_checkpoint_value_norms_and_rollout_equal_numpy_from_transformers(families, family):
    tokenizer, served = families[family]
    new_tokens = {"gpt2": 2, "llama": 2, "t5": 4, "bart": 4}.get(family)
    analysis, norms = value_norms(served, "The cat sat on the mat.", new_tokens=new_tokens)
    reference = copy.deepcopy(served.net)  # transformers' own eager attention, nothing of ours
    reference.set_attn_implementation("eager")
    ids = torch.tensor([tokenizer.convert_tokens_to_ids(analysis.tokens)])
    inputs = {"input_ids": ids}
    if analysis.output_tokens is not None:
        inputs["decoder_input_ids"] = torch.tensor([tokenizer.convert_tokens_to_ids(analysis.output_tokens)])
    outputs: dict = {}
    hooks = []
    for kind in analysis.patterns:
        for layer in range(analysis.patterns[kind].shape[0]):
            module, part = value_projection(reference, family, kind, layer)
            hooks.append(module.register_forward_hook(
                lambda m, args, out, key=(kind, layer), part=part: outputs.__setitem__(key, out[0, :, part])))
    with torch.no_grad():
        out = reference(**inputs, output_attentions=True)
    for hook in hooks:
        hook.remove()
    attentions = ({"encoder": out.encoder_attentions, "decoder": out.decoder_attentions, "cross": out.cross_attentions}
                  if analysis.output_tokens is not None else {next(iter(analysis.patterns)): out.attentions})
    for kind, layers in attentions.items():
        for layer, attention in enumerate(layers):
            projection, transposed = output_projection(reference, family, kind, layer)
            w_out = projection.weight.detach().numpy()
            w_out = w_out.T if transposed else w_out  # (C, H·D) as nn.Linear holds it
            expected = numpy_value_norms(attention[0].numpy(), outputs[(kind, layer)].numpy(), w_out)
            np.testing.assert_allclose(norms[kind][layer].numpy(), expected, rtol=1e-4, atol=1e-5,
                                       err_msg=f"{family} {kind} {layer}")
        if kind in rollout_kinds(analysis.layout):
            attention = torch.stack([a[0] for a in layers]).numpy()
            np.testing.assert_allclose(rollouts(analysis.patterns, analysis.layout)[kind].numpy(),
                                       numpy_rollout(attention), rtol=RTOL, atol=ATOL, err_msg=f"{family} {kind}")
    if family == "llama":  # grouped-query attention: heads 0 and 1 share values, not patterns
        assert served.info.kv_heads == 2


def test_output_projections_found_are_the_families_own(families):
    for family, (_, served) in families.items():
        for (kind, layer), found in served.output_projections().items():
            expected, _ = output_projection(served.net, family, kind, layer)
            assert found is expected, f"{family} {kind} {layer}"
