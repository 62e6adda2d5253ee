"""headscope/models/nets/causal.py: shapes, the causal mask, padding, and equality with torch.nn.MultiheadAttention."""

import pytest
import torch
from torch import nn

from headscope.models.induction import InductionModel, encode
from headscope.models.nets.causal import CausalLM, CausalLMConfig

TINY = CausalLMConfig(vocab_size=20, max_positions=12, layers=3, heads=2, width=16, mlp_width=32)
TEXTS = ["def f(x): return x + 1", "The quick brown fox", "k#9Qz k#9Qz k#"]


@pytest.fixture(scope="module")
def trained() -> CausalLM:
    return InductionModel.load().net


@pytest.fixture(scope="module")
def tiny() -> CausalLM:
    torch.manual_seed(0)
    return CausalLM(TINY).eval()


def tiny_ids(B: int = 3, T: int = 9) -> torch.Tensor:
    return torch.randint(0, TINY.vocab_size, (B, T), generator=torch.Generator().manual_seed(1))  # (B, T)


@torch.no_grad()
def test_shapes(tiny):
    logits, patterns = tiny(tiny_ids())
    assert logits.shape == (3, 9, TINY.vocab_size)  # (B, T, V)
    assert patterns.shape == (3, 3, 2, 9, 9)  # (L, B, H, T, T)


@torch.no_grad()
def test_rows_sum_to_one_and_nothing_above_the_diagonal(tiny):
    _, patterns = tiny(tiny_ids())
    torch.testing.assert_close(patterns.sum(-1), torch.ones(patterns.shape[:-1]), atol=1e-6, rtol=0)
    above = torch.ones(9, 9, dtype=torch.bool).triu(1)
    assert (patterns[..., above] == 0).all()  # exactly zero, not small
    assert (patterns[..., ~above] > 0).all()


@torch.no_grad()
def test_a_position_never_depends_on_later_tokens(tiny):
    ids = tiny_ids()
    changed = ids.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % TINY.vocab_size
    logits, patterns = tiny(ids)
    logits2, patterns2 = tiny(changed)
    torch.testing.assert_close(logits[:, :5], logits2[:, :5], atol=1e-6, rtol=0)
    torch.testing.assert_close(patterns[..., :5, :5], patterns2[..., :5, :5], atol=1e-7, rtol=0)
    assert not torch.allclose(logits[:, 5:], logits2[:, 5:])


@torch.no_grad()
def test_right_padding_leaves_real_positions_unchanged(tiny):
    ids = tiny_ids()
    pad_mask = torch.zeros(3, 9, dtype=torch.bool)  # (B, T)
    pad_mask[1, 6:] = True
    logits, patterns = tiny(ids, key_padding_mask=pad_mask)
    alone_logits, alone = tiny(ids[1:2, :6])
    torch.testing.assert_close(logits[1:2, :6], alone_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(patterns[:, 1:2, :, :6, :6], alone, atol=1e-6, rtol=0)
    assert (patterns[:, 1, :, :, 6:] == 0).all()  # padded keys get exactly zero weight


def test_too_long_inputs_are_refused(tiny):
    with pytest.raises(ValueError, match="max_positions"):
        tiny(torch.zeros(1, TINY.max_positions + 1, dtype=torch.long))


def reference(attention) -> nn.MultiheadAttention:
    """torch's own multi-head attention holding the weights of one of our MultiHeadAttention."""
    mha = nn.MultiheadAttention(attention.width, attention.heads, batch_first=True).eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(attention.qkv.weight)
        mha.in_proj_bias.copy_(attention.qkv.bias)
        mha.out_proj.weight.copy_(attention.out_proj.weight)
        mha.out_proj.bias.copy_(attention.out_proj.bias)
    return mha


@torch.no_grad()
def test_every_layer_equals_torch_multihead_attention(trained):
    """Each block of the trained model, fed its real input, against nn.MultiheadAttention with a causal
    attn_mask and against F.scaled_dot_product_attention; the logits against a forward written out here."""
    ids = torch.tensor([encode(TEXTS[0])])  # (1, T)
    T = ids.shape[1]
    logits, patterns = trained(ids)
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)  # (T, T), True = may not attend

    x = trained.token_emb(ids) + trained.pos_emb.weight[:T]  # (1, T, C)
    for layer, block in enumerate(trained.blocks):
        h = block.ln_1(x)  # (1, T, C), the layer's input
        out, pattern = block.attn(h, causal=True)
        ref_out, ref_pattern = reference(block.attn)(h, h, h, attn_mask=causal, need_weights=True, average_attn_weights=False)
        torch.testing.assert_close(pattern, ref_pattern, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=1e-6)
        q, k, v = block.attn.project(h, None)  # (1, H, T, D) each
        z = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)  # (1, H, T, D)
        torch.testing.assert_close(out, block.attn.out_proj(z.transpose(1, 2).flatten(2)), atol=1e-6, rtol=1e-6)
        assert torch.equal(patterns[layer], pattern)
        x = x + out  # (1, T, C)
        x = x + block.mlp(block.ln_2(x))  # (1, T, C)
    torch.testing.assert_close(logits, trained.ln_f(x) @ trained.token_emb.weight.T, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_generate_is_the_greedy_argmax_loop(trained):
    ids = torch.tensor([encode("k#9Qz.m k#9")])  # (1, P)
    generated = trained.generate(ids, 6)  # (1, P + 6)
    expected = ids
    for _ in range(6):
        logits, _ = trained(expected)
        expected = torch.cat([expected, logits[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(generated, expected)
    assert generated.shape == (1, ids.shape[1] + 6)
