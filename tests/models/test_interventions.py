"""headscope/models/interventions.py: knocking heads out, checked against independent computations.

Zero-ablating head h is the same as zeroing the columns of the output projection that read head h's
slice of the concatenated z; the references below do exactly that to a copy of the weights (our model,
or transformers' own model for MiniLM and for every checkpoint family) and compare the outputs.
Mean ablation is checked against the head's mean output, computed from transformers' own weights and
values. Tolerance 1e-5: the same arithmetic in a different order.
"""

import copy

import pytest
import torch

from headscope.models.interventions import (
    Ablation,
    BadAblation,
    ablating,
    capturing,
    check_ablation,
)
from tests.checkpoints import FAMILIES, build

TEXT = "The keys to the cabinet are on the table."


def minilm_ids(minilm, text=TEXT):
    return torch.tensor([minilm.tokenizer.encode(text).ids])  # (1, T)


def test_minilm_zero_ablation_equals_transformers_with_the_head_columns_of_its_output_projection_zeroed(minilm, hf_bert):
    layer, head = 2, 5
    ids = minilm_ids(minilm)
    with torch.no_grad(), ablating(minilm.attention_modules(), Ablation((("encoder", layer, head),), "zero")):
        ours, _ = minilm.encoder(ids)  # (1, T, C)
    reference = copy.deepcopy(hf_bert[0])
    D = reference.config.hidden_size // reference.config.num_attention_heads
    with torch.no_grad():
        reference.encoder.layer[layer].attention.output.dense.weight[:, head * D:(head + 1) * D] = 0
        expected = reference(input_ids=ids).last_hidden_state
        unablated = hf_bert[0](input_ids=ids).last_hidden_state
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    assert (ours - unablated).abs().max() > 1e-3  # the head mattered: the comparison can fail


def test_minilm_mean_ablation_replaces_the_head_output_with_its_mean_over_the_queries(minilm, hf_bert):
    layer, head = 1, 9
    ids = minilm_ids(minilm)
    model = hf_bert[0]
    D = model.config.hidden_size // model.config.num_attention_heads
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True, output_attentions=True)
        x = out.hidden_states[layer][0]  # (T, C): the layer's input
        value = model.encoder.layer[layer].attention.self.value
        v = (x @ value.weight.T + value.bias)[:, head * D:(head + 1) * D]  # (T, D)
        z_mean = (out.attentions[layer][0, head] @ v).mean(0)  # (D,)
        reference = copy.deepcopy(model)
        dense = reference.encoder.layer[layer].attention.output.dense
        dense.bias += dense.weight[:, head * D:(head + 1) * D] @ z_mean  # the mean enters as a constant...
        dense.weight[:, head * D:(head + 1) * D] = 0  # ...and the head's own output not at all
        expected = reference(input_ids=ids).last_hidden_state
        with ablating(minilm.attention_modules(), Ablation((("encoder", layer, head),), "mean")):
            ours, _ = minilm.encoder(ids)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def test_mean_ablation_in_a_padded_batch_uses_only_the_real_queries(minilm):
    texts = ["A short one.", TEXT]
    ablation = Ablation((("encoder", 0, 3), ("encoder", 4, 0)), "mean")
    with torch.no_grad(), ablating(minilm.attention_modules(), ablation):
        alone = [minilm.encoder(minilm_ids(minilm, t))[0][0] for t in texts]
        ids = torch.zeros(2, alone[1].shape[0], dtype=torch.long)
        padding = torch.ones_like(ids, dtype=torch.bool)
        for b, t in enumerate(texts):
            row = minilm_ids(minilm, t)[0]
            ids[b, : len(row)], padding[b, : len(row)] = row, False
        batch, _ = minilm.encoder(ids, key_padding_mask=padding)
    for b, a in enumerate(alone):
        torch.testing.assert_close(batch[b, : len(a)], a, atol=1e-5, rtol=0)


def test_the_block_leaves_the_model_as_it_was(minilm):
    ids = minilm_ids(minilm)
    with torch.no_grad():
        before, _ = minilm.encoder(ids)
        with ablating(minilm.attention_modules(), Ablation((("encoder", 0, 0),), "zero")):
            pass
        after, _ = minilm.encoder(ids)
    assert torch.equal(before, after)
    assert all(m.edits == () and m.capture is None for m in minilm.attention_modules().values())


def test_capture_records_what_the_analysis_shows(minilm):
    modules = minilm.attention_modules()
    with torch.no_grad(), capturing(modules) as records:
        analysis = minilm.analyze(TEXT)
    for (kind, layer), calls in records.items():
        assert len(calls) == 1
        torch.testing.assert_close(calls[0]["pattern"][0], analysis.patterns[kind][layer], atol=0, rtol=0)
        torch.testing.assert_close(calls[0]["z"], calls[0]["pattern"] @ calls[0]["value"], atol=1e-6, rtol=0)


@pytest.mark.parametrize("ablation, message", [
    (Ablation((("decoder", 0, 0),)), "kind 'decoder' is not one of this model's kinds (encoder)"),
    (Ablation((("encoder", 6, 0),)), "layer 6 of encoder is out of range 0..5"),
    (Ablation((("encoder", 0, 12),)), "head 12 is out of range 0..11"),
    (Ablation((), "half"), "ablation must be one of zero, mean"),
])
def test_ablations_the_model_does_not_have_are_named(minilm, ablation, message):
    with pytest.raises(BadAblation, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_ablation(ablation, minilm.attention_modules(), minilm.info.heads)


# --- transformers checkpoints: the hook on each family's attention -------------------------------------------

def output_projection(model, family: str, kind: str, layer: int):
    """The linear layer that reads the concatenated heads, and whether its weight is stored (in, out)."""
    if family in ("bert", "roberta"):
        return model.encoder.layer[layer].attention.output.dense, False
    if family == "distilbert":
        return model.transformer.layer[layer].attention.out_lin, False
    if family == "gpt2":
        return model.transformer.h[layer].attn.c_proj, True  # Conv1D: weight (in, out)
    if family == "llama":
        return model.model.layers[layer].self_attn.o_proj, False
    if family == "bart":
        stack = model.model.encoder if kind == "encoder" else model.model.decoder
        block = stack.layers[layer]
        return (block.encoder_attn if kind == "cross" else block.self_attn).out_proj, False
    if family == "t5":
        stack = model.encoder if kind == "encoder" else model.decoder
        part = stack.block[layer].layer[1 if kind == "cross" else 0]
        return (part.EncDecAttention if kind == "cross" else part.SelfAttention).o, False
    raise ValueError(family)


def family_output(model, family: str, enc) -> torch.Tensor:
    inputs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    if family in ("bart", "t5"):
        start = model.config.decoder_start_token_id
        out = model(**inputs, decoder_input_ids=torch.tensor([[start, 5, 7, 9]]))
        return out.logits
    out = model(**inputs)
    return out.logits if family in ("gpt2", "llama") else out.last_hidden_state


@pytest.mark.parametrize("family", FAMILIES)
def test_every_transformers_family_ablates_like_zeroed_output_projection_columns(family, tmp_path):
    from headscope.models.hf.model import HFModel

    tokenizer, original = build(family)
    original.save_pretrained(tmp_path)  # a BERT built with a masked-LM head is served as a BertModel
    tokenizer.save_pretrained(tmp_path)
    served = HFModel.load(f"tiny-{family}", tmp_path)
    kinds = list(served.info.kinds)
    head, layer = 1, 1
    enc = tokenizer("The cat sat on the mat.", return_tensors="pt")
    for kind in kinds:
        reference = copy.deepcopy(served.net)  # the same architecture class as served, run by eager attention
        reference.set_attn_implementation("eager")
        projection, transposed = output_projection(reference, family, kind, layer)
        D = 8  # width 32 / 4 heads in every tiny family
        with torch.no_grad():
            if transposed:
                projection.weight[head * D:(head + 1) * D, :] = 0
            else:
                projection.weight[:, head * D:(head + 1) * D] = 0
            expected = family_output(reference, family, enc)
            unablated = family_output(served.net, family, enc)
            with ablating(served.attention_modules(), Ablation(((kind, layer, head),), "zero")):
                ours = family_output(served.net, family, enc)
        torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0, msg=f"{family} {kind}")
        assert (ours - unablated).abs().max() > 1e-4, f"{family} {kind}: the head made no difference"
