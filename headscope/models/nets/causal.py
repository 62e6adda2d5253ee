"""A small decoder-only (causal) transformer language model, nanoGPT style.

Every position reads only itself and the positions before it (causal self-attention), so the
output at position t is a prediction of the token at t + 1. Blocks are pre-LayerNorm as in
GPT-2; positions are learned embeddings; the output layer shares the token embeddings (weight
tying). Every attention layer is headscope/models/attention.py's `MultiHeadAttention` with causal=True,
and `forward` returns the patterns of all layers with the logits. The residual stream passes through
TransformerLens-style hook points (headscope/models/interventions.py `HookPoint`): hook_resid_pre entering each
block, hook_attn_out and hook_mlp_out before each is added to it, hook_resid_final entering ln_f.

Legend: B batch, T tokens, C model width, H heads, L layers, V vocabulary size.
"""

from dataclasses import dataclass

import torch
from torch import nn

from headscope.models.attention import MultiHeadAttention
from headscope.models.interventions import HookPoint


@dataclass(frozen=True)
class CausalLMConfig:
    vocab_size: int = 257  # 256 bytes and a start token
    max_positions: int = 128  # positions, the start token included
    layers: int = 2
    heads: int = 4
    width: int = 64
    mlp_width: int = 256


class MLP(nn.Module):
    def __init__(self, config: CausalLMConfig):
        super().__init__()
        self.fc = nn.Linear(config.width, config.mlp_width)
        self.proj = nn.Linear(config.mlp_width, config.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(nn.functional.gelu(self.fc(x)))  # (B, T, C)


class Block(nn.Module):
    """Causal self-attention over the tokens so far, then an MLP."""

    def __init__(self, config: CausalLMConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.width)
        self.attn = MultiHeadAttention(config.width, config.heads)
        self.ln_2 = nn.LayerNorm(config.width)
        self.mlp = MLP(config)
        self.hook_resid_pre, self.hook_attn_out, self.hook_mlp_out = HookPoint(), HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None):
        x = self.hook_resid_pre(x)  # (B, T, C)
        a, pattern = self.attn(self.ln_1(x), key_padding_mask=key_padding_mask, causal=True)  # (B, T, C), (B, H, T, T)
        x = x + self.hook_attn_out(a)  # (B, T, C)
        x = x + self.hook_mlp_out(self.mlp(self.ln_2(x)))  # (B, T, C)
        return x, pattern


class CausalLM(nn.Module):
    def __init__(self, config: CausalLMConfig):
        super().__init__()
        self.config = config
        self.token_emb = nn.Embedding(config.vocab_size, config.width)  # shared with the output layer
        self.pos_emb = nn.Embedding(config.max_positions, config.width)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.ln_f = nn.LayerNorm(config.width)
        self.hook_resid_final = HookPoint()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, ids: torch.Tensor, key_padding_mask: torch.Tensor | None = None):
        """ids (B, T) -> logits (B, T, V) and patterns (L, B, H, T, T).

        key_padding_mask: (B, T) bool, True at padding. With right padding a real query never
        sees a padded key anyway (they come after it); the mask keeps padded rows well defined.
        Logits at position t predict the token at t + 1.
        """
        T = ids.shape[1]
        if T > self.config.max_positions:
            raise ValueError(f"{T} tokens, more than max_positions {self.config.max_positions}")
        positions = torch.arange(T, device=ids.device)  # (T,)
        x = self.token_emb(ids) + self.pos_emb(positions)  # (B, T, C)
        patterns = []
        for block in self.blocks:
            x, pattern = block(x, key_padding_mask)  # (B, T, C), (B, H, T, T)
            patterns.append(pattern)
        logits = self.ln_f(self.hook_resid_final(x)) @ self.token_emb.weight.T  # (B, T, V)
        return logits, torch.stack(patterns)  # (B, T, V), (L, B, H, T, T)

    @torch.no_grad()
    def generate(self, ids: torch.Tensor, steps: int) -> torch.Tensor:
        """Greedy continuation: (B, T) ids -> (B, T + steps) ids, the argmax token appended each step.

        Every step re-runs the whole prefix (no cache: simple, and exact). The caller keeps
        T + steps within max_positions.
        """
        for _ in range(steps):
            logits, _ = self(ids)  # (B, t, V)
            next_id = logits[:, -1].argmax(dim=-1)  # (B,)
            ids = torch.cat([ids, next_id[:, None]], dim=1)  # (B, t + 1)
        return ids

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
