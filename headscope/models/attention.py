"""Multi-head attention, written as the textbook steps so that its weights exist.

"Attention is all you need", section 3.2: project X into per-head Q, K, V; run scaled
dot-product attention in every head with an explicit softmax; concatenate the heads;
apply the output projection. `forward` returns the output *and* the attention pattern.

Legend: B batch, Tq query tokens, Tk key tokens, C model width, H heads, D = C // H.
"""

import math

import torch
from torch import nn

from headscope.models.interventions import edit_z


class MultiHeadAttention(nn.Module):
    """Self- or cross-attention with `heads` heads over a model of width `width`.

    The Q, K and V projections are held as one (3C, C) matrix, in the same layout as
    `torch.nn.MultiheadAttention.in_proj_weight`: rows [0, C) make Q, [C, 2C) K, [2C, 3C) V.
    Self-attention projects X once through all of it; cross-attention projects the queries
    and the keys/values through their own slices.
    """

    def __init__(self, width: int, heads: int, bias: bool = True):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.width = width
        self.heads = heads
        self.head_width = width // heads
        self.qkv = nn.Linear(width, 3 * width, bias=bias)  # projection into per-head Q, K, V
        self.out_proj = nn.Linear(width, width, bias=bias)  # final linear layer after concatenation
        # Set only inside headscope/models/interventions.py's `editing` and `capturing` blocks:
        self.edits: tuple = ()  # HeadEdits made to z before the output projection
        self.capture: list[dict] | None = None  # each call appends its query, key, value, pattern, z, scale and mask

    def project(self, x: torch.Tensor, context: torch.Tensor | None):
        """Project into Q, K, V, each (B, H, T, D); keys and values come from `context` if given."""
        C = self.width
        if context is None:
            q, k, v = self.qkv(x).split(C, dim=2)  # 3 × (B, T, C)
        else:
            w, b = self.qkv.weight, self.qkv.bias
            q = nn.functional.linear(x, w[:C], None if b is None else b[:C])  # (B, Tq, C)
            k, v = nn.functional.linear(context, w[C:], None if b is None else b[C:]).split(C, dim=2)  # 2 × (B, Tk, C)
        return self.split_heads(q), self.split_heads(k), self.split_heads(v)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.heads, self.head_width).transpose(1, 2)  # (B, H, T, D)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        causal: bool = False,
        pattern_out: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend from `x` (B, Tq, C) to `context` (B, Tk, C), or to `x` itself when `context` is None.

        key_padding_mask: (B, Tk) bool, True where a key is padding and must not be attended to.
        causal: query i sees only keys j <= i (the decoder's autoregressive mask).
        pattern_out: optional (B, H, Tq, Tk) tensor to write the pattern into, such as one layer
            of a model's stacked (L, B, H, Tq, Tk) result, which then needs no copying.
        Returns (output (B, Tq, C), pattern (B, H, Tq, Tk)); masked weights are exactly 0.
        """
        B, Tq, C = x.shape
        q, k, v = self.project(x, context)  # (B, H, Tq, D), (B, H, Tk, D), (B, H, Tk, D)
        Tk = k.shape[2]

        # Scaled dot-product attention. Scaling q before the product equals scaling the
        # scores after it, and touches D numbers per token instead of Tk.
        scale = 1.0 / math.sqrt(self.head_width)
        attn_scores = (q * scale) @ k.transpose(-2, -1)  # (B, H, Tq, Tk)
        mask = None  # (B or 1, 1, Tq or 1, Tk) additive: 0 where a key may be read, -inf where it is masked
        if key_padding_mask is not None:
            mask = torch.zeros(B, 1, 1, Tk, device=x.device).masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        if causal:
            future = torch.ones(Tq, Tk, dtype=torch.bool, device=x.device).triu(1)  # (Tq, Tk)
            mask = torch.zeros(1, 1, Tq, Tk, device=x.device).masked_fill(future, float("-inf")) + (0 if mask is None else mask)
        if mask is not None:
            attn_scores = attn_scores + mask  # (B, H, Tq, Tk)
        pattern = torch.softmax(attn_scores, dim=-1, out=pattern_out)  # (B, H, Tq, Tk), every row sums to 1
        z = pattern @ v  # (B, H, Tq, D), one result per head
        if self.capture is not None:
            self.capture.append({"query": q, "key": k, "value": v, "pattern": pattern, "z": z, "scale": scale,
                                 "mask": mask})
        if self.edits:
            # In self-attention the queries are the keys, so padded keys are padded queries too.
            valid = None if key_padding_mask is None or context is not None else ~key_padding_mask  # (B, Tq)
            z = edit_z(self, z, valid)  # (B, H, Tq, D)

        z = z.transpose(1, 2).reshape(B, Tq, C)  # (B, Tq, C), the heads concatenated
        return self.out_proj(z), pattern  # (B, Tq, C), (B, H, Tq, Tk)
