"""Our MultiHeadAttention equals torch.nn.MultiheadAttention, outputs and per-head weights, to 1e-6."""

import pytest
import torch
from torch import nn

from headscope.models.attention import MultiHeadAttention

TOL = 1e-6
SHAPES = [(10, 2, 64), (5, 3, 128), (6, 4, 32)]  # (sequence, batch, width)


def pair(width: int, heads: int, seed: int):
    """Ours and PyTorch's, holding the same random parameters."""
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(width, heads, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_bias.normal_(0, 0.1)  # PyTorch starts biases at 0; make them matter
        ref.out_proj.bias.normal_(0, 0.1)
    ours = MultiHeadAttention(width, heads).eval()
    with torch.no_grad():
        ours.qkv.weight.copy_(ref.in_proj_weight)
        ours.qkv.bias.copy_(ref.in_proj_bias)
        ours.out_proj.weight.copy_(ref.out_proj.weight)
        ours.out_proj.bias.copy_(ref.out_proj.bias)
    return ours, ref


def padding_mask(B: int, T: int) -> torch.Tensor:
    """(B, T) True at padding: batch element b has its last b keys padded (at least one key kept)."""
    lengths = torch.tensor([max(1, T - b) for b in range(B)])
    return torch.arange(T)[None, :] >= lengths[:, None]


def heads_for(width: int) -> list[int]:
    return [h for h in (1, 2, 4, 8) if width % h == 0]


@pytest.mark.parametrize("T,B,C", SHAPES)
@pytest.mark.parametrize("masks", ["none", "padding", "causal", "both"])
def test_self_attention_equals_torch(T, B, C, masks):
    for heads in heads_for(C):
        ours, ref = pair(C, heads, seed=T * 1000 + heads)
        x = torch.randn(B, T, C)
        pad = padding_mask(B, T) if masks in ("padding", "both") else None
        causal = masks in ("causal", "both")
        attn_mask = torch.ones(T, T, dtype=torch.bool).triu(1) if causal else None
        with torch.no_grad():
            out, pattern = ours(x, key_padding_mask=pad, causal=causal)
            ref_out, ref_pattern = ref(x, x, x, key_padding_mask=pad, attn_mask=attn_mask,
                                       need_weights=True, average_attn_weights=False)
        assert pattern.shape == (B, heads, T, T)
        torch.testing.assert_close(pattern, ref_pattern, atol=TOL, rtol=0)
        torch.testing.assert_close(out, ref_out, atol=TOL, rtol=0)
        if pad is not None:  # masked keys get exactly zero weight
            assert (pattern.masked_select(pad[:, None, None, :]) == 0).all()
        if causal:
            assert (pattern.masked_select(attn_mask) == 0).all()
        torch.testing.assert_close(pattern.sum(-1), torch.ones(B, heads, T), atol=1e-6, rtol=0)


@pytest.mark.parametrize("T,B,C", SHAPES)
def test_cross_attention_equals_torch(T, B, C):
    """Queries from one sequence, keys and values from another of a different length."""
    Tk = T + 3
    for heads in heads_for(C):
        ours, ref = pair(C, heads, seed=heads)
        x, context = torch.randn(B, T, C), torch.randn(B, Tk, C)
        pad = padding_mask(B, Tk)
        with torch.no_grad():
            out, pattern = ours(x, context, key_padding_mask=pad)
            ref_out, ref_pattern = ref(x, context, context, key_padding_mask=pad,
                                       need_weights=True, average_attn_weights=False)
        assert pattern.shape == (B, heads, T, Tk)
        torch.testing.assert_close(pattern, ref_pattern, atol=TOL, rtol=0)
        torch.testing.assert_close(out, ref_out, atol=TOL, rtol=0)


def test_width_must_divide_into_heads():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(30, 4)


def test_pattern_out_receives_the_pattern_in_place():
    ours, _ = pair(64, 4, seed=1)
    x = torch.randn(2, 10, 64)
    buffer = torch.full((3, 2, 4, 10, 10), -1.0)  # a stacked result with room for three layers
    with torch.no_grad():
        out, pattern = ours(x)
        out_into, pattern_into = ours(x, pattern_out=buffer[1])
    assert pattern_into.data_ptr() == buffer[1].data_ptr()
    torch.testing.assert_close(buffer[1], pattern, atol=0, rtol=0)
    torch.testing.assert_close(out_into, out, atol=0, rtol=0)
    assert (buffer[0] == -1).all() and (buffer[2] == -1).all()
