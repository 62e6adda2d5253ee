"""headscope/models/nets/seq2seq.py: shapes, masks, and equality with torch.nn.MultiheadAttention on the trained weights."""

import pytest
import torch
from torch import nn

from headscope.models.dates import DatesModel, encode_source, pad_batch
from headscope.models.nets.seq2seq import Seq2Seq, Seq2SeqConfig

TEXTS = ["Wednesday, the 25th of November 2026", "5.3.1999", "NOV. 1st, 1900"]
TINY = Seq2SeqConfig(vocab_size=20, max_source=16, max_target=6, encoder_layers=2, decoder_layers=3, heads=2, width=16, mlp_width=32)


@pytest.fixture(scope="module")
def trained() -> Seq2Seq:
    return DatesModel.load().net


@pytest.fixture(scope="module")
def tiny() -> Seq2Seq:
    torch.manual_seed(0)
    return Seq2Seq(TINY).eval()


def tiny_batch():
    g = torch.Generator().manual_seed(1)
    source = torch.randint(4, TINY.vocab_size, (3, 9), generator=g)  # (B, S)
    source_pad_mask = torch.zeros(3, 9, dtype=torch.bool)  # (B, S)
    source_pad_mask[1, 6:] = True
    source_pad_mask[2, 3:] = True
    target = torch.randint(4, TINY.vocab_size, (3, 5), generator=g)  # (B, T)
    return source, source_pad_mask, target


def test_shapes_per_kind(tiny):
    source, source_pad_mask, target = tiny_batch()
    logits, patterns = tiny(source, target, source_pad_mask)
    assert logits.shape == (3, 5, TINY.vocab_size)
    assert set(patterns) == {"encoder", "decoder", "cross"}
    assert patterns["encoder"].shape == (2, 3, 2, 9, 9)  # (L, B, H, S, S)
    assert patterns["decoder"].shape == (3, 3, 2, 5, 5)  # (L, B, H, T, T)
    assert patterns["cross"].shape == (3, 3, 2, 5, 9)  # (L, B, H, T, S)


def test_rows_sum_to_one_and_masks_are_exact(tiny):
    source, source_pad_mask, target = tiny_batch()
    _, patterns = tiny(source, target, source_pad_mask)
    for pattern in patterns.values():
        torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:-1]), atol=1e-6, rtol=0)
    above = torch.ones(5, 5, dtype=torch.bool).triu(1)
    assert (patterns["decoder"][..., above] == 0).all()
    assert (patterns["decoder"][..., ~above] > 0).all()
    for kind in ("encoder", "cross"):  # padded keys get exactly zero weight
        assert (patterns[kind][:, 1, :, :, 6:] == 0).all()
        assert (patterns[kind][:, 2, :, :, 3:] == 0).all()
        assert (patterns[kind][:, 0] > 0).all()


def test_padding_does_not_change_real_positions(tiny):
    source, source_pad_mask, target = tiny_batch()
    logits, patterns = tiny(source, target, source_pad_mask)
    alone_logits, alone = tiny(source[2:, :3], target[2:])  # the third row without its padding
    torch.testing.assert_close(logits[2:], alone_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(patterns["cross"][:, 2:, ..., :3], alone["cross"], atol=1e-6, rtol=0)
    torch.testing.assert_close(patterns["encoder"][:, 2:, :, :3, :3], alone["encoder"], atol=1e-6, rtol=0)


def test_too_long_inputs_are_refused(tiny):
    with pytest.raises(ValueError, match="max_source"):
        tiny(torch.zeros(1, TINY.max_source + 1, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="max_target"):
        tiny(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, TINY.max_target + 1, dtype=torch.long))


def reference(attention, heads: int) -> nn.MultiheadAttention:
    """torch's own multi-head attention holding the weights of one of our MultiHeadAttention."""
    mha = nn.MultiheadAttention(attention.width, heads, batch_first=True).eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(attention.qkv.weight)
        mha.in_proj_bias.copy_(attention.qkv.bias)
        mha.out_proj.weight.copy_(attention.out_proj.weight)
        mha.out_proj.bias.copy_(attention.out_proj.bias)
    return mha


def assert_same(ours, theirs):
    torch.testing.assert_close(ours[0], theirs[0], atol=1e-6, rtol=1e-6)  # outputs (B, Tq, C)
    torch.testing.assert_close(ours[1], theirs[1], atol=1e-6, rtol=1e-6)  # patterns (B, H, Tq, Tk)


@torch.no_grad()
def test_attention_equals_torch_multihead_attention(trained):
    """Every encoder, decoder and cross attention layer of the trained model, fed its real inputs."""
    config = trained.config
    source, source_pad_mask = pad_batch([encode_source(t) for t in TEXTS])  # (B, S), (B, S)
    target = trained.generate(source, 1, 2, source_pad_mask, steps=8)[:, :8]  # (B, T), its own output
    T = target.shape[1]
    logits, patterns = trained(source, target, source_pad_mask)
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)  # (T, T), True = may not attend

    x = trained.embed(source, trained.source_pos)  # (B, S, C)
    for layer, block in enumerate(trained.encoder):
        h = block.ln_1(x)  # (B, S, C), the layer's input
        ours = block.self_attn(h, key_padding_mask=source_pad_mask)
        theirs = reference(block.self_attn, config.heads)(h, h, h, key_padding_mask=source_pad_mask, need_weights=True, average_attn_weights=False)
        assert_same(ours, theirs)
        assert torch.equal(patterns["encoder"][layer], ours[1])
        x, _ = block(x, source_pad_mask)
    memory = trained.ln_encoder(x)  # (B, S, C)

    y = trained.embed(target, trained.target_pos)  # (B, T, C)
    for layer, block in enumerate(trained.decoder):
        h = block.ln_1(y)  # (B, T, C)
        ours = block.self_attn(h, causal=True)
        theirs = reference(block.self_attn, config.heads)(h, h, h, attn_mask=causal, need_weights=True, average_attn_weights=False)
        assert_same(ours, theirs)
        assert torch.equal(patterns["decoder"][layer], ours[1])

        h2 = block.ln_2(y + ours[0])  # (B, T, C)
        ours = block.cross_attn(h2, context=memory, key_padding_mask=source_pad_mask)
        theirs = reference(block.cross_attn, config.heads)(h2, memory, memory, key_padding_mask=source_pad_mask, need_weights=True, average_attn_weights=False)
        assert_same(ours, theirs)
        assert torch.equal(patterns["cross"][layer], ours[1])
        y, _, _ = block(y, memory, source_pad_mask)
    torch.testing.assert_close(logits, trained.ln_f(y) @ trained.token_emb.weight.T)


@torch.no_grad()
def test_generate_matches_teacher_forced_rerun(trained):
    source, source_pad_mask = pad_batch([encode_source(t) for t in TEXTS])  # (B, S), (B, S)
    generated = trained.generate(source, 1, 2, source_pad_mask)  # (B, 1 + n)
    logits, _ = trained(source, generated[:, :-1], source_pad_mask)  # (B, n, V)
    assert torch.equal(logits.argmax(-1), generated[:, 1:])
