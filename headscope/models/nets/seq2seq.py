"""A small encoder–decoder transformer ("Attention is all you need", section 3.1), nanoGPT style.

The encoder reads the whole input with self-attention. The decoder writes the output one token
at a time: masked (causal) self-attention over what it has written so far, then cross-attention
from its positions (queries) to the encoder output (keys and values), then an MLP. All three
kinds of attention are the same `MultiHeadAttention`, and every one returns its pattern.
Blocks are pre-LayerNorm, as in GPT-2. Token embeddings are shared by encoder, decoder and the
output layer (weight tying). Both stacks' residual streams pass through hook points
(headscope/models/interventions.py `HookPoint`): hook_resid_pre entering each block, hook_attn_out (self-attention),
hook_cross_out (cross-attention) and hook_mlp_out before each is added, and the decoder's hook_resid_final entering
ln_f.

Legend: B batch, S source (input) tokens, T target (decoder) tokens, C model width, H heads,
L layers, V vocabulary size.
"""

from dataclasses import dataclass

import torch
from torch import nn

from headscope.models.attention import MultiHeadAttention
from headscope.models.interventions import HookPoint


@dataclass(frozen=True)
class Seq2SeqConfig:
    vocab_size: int = 99
    max_source: int = 64  # encoder positions, special tokens included
    max_target: int = 12  # decoder positions, the start token included
    encoder_layers: int = 3
    decoder_layers: int = 3
    heads: int = 4
    width: int = 128
    mlp_width: int = 256


class MLP(nn.Module):
    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.fc = nn.Linear(config.width, config.mlp_width)
        self.proj = nn.Linear(config.mlp_width, config.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(nn.functional.gelu(self.fc(x)))  # (B, T, C)


class EncoderBlock(nn.Module):
    """Self-attention over the input, then an MLP."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.width)
        self.self_attn = MultiHeadAttention(config.width, config.heads)
        self.ln_2 = nn.LayerNorm(config.width)
        self.mlp = MLP(config)
        self.hook_resid_pre, self.hook_attn_out, self.hook_mlp_out = HookPoint(), HookPoint(), HookPoint()

    def forward(self, x, source_pad_mask=None):
        x = self.hook_resid_pre(x)  # (B, S, C)
        a, pattern = self.self_attn(self.ln_1(x), key_padding_mask=source_pad_mask)  # (B, S, C), (B, H, S, S)
        x = x + self.hook_attn_out(a)  # (B, S, C)
        x = x + self.hook_mlp_out(self.mlp(self.ln_2(x)))  # (B, S, C)
        return x, pattern


class DecoderBlock(nn.Module):
    """Causal self-attention over the output so far, cross-attention to the input, an MLP."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.width)
        self.self_attn = MultiHeadAttention(config.width, config.heads)
        self.ln_2 = nn.LayerNorm(config.width)
        self.cross_attn = MultiHeadAttention(config.width, config.heads)
        self.ln_3 = nn.LayerNorm(config.width)
        self.mlp = MLP(config)
        self.hook_resid_pre, self.hook_attn_out, self.hook_mlp_out = HookPoint(), HookPoint(), HookPoint()
        self.hook_cross_out = HookPoint()

    def forward(self, x, memory, source_pad_mask=None, target_pad_mask=None):
        x = self.hook_resid_pre(x)  # (B, T, C)
        a, self_pattern = self.self_attn(self.ln_1(x), key_padding_mask=target_pad_mask, causal=True)  # (B, T, C), (B, H, T, T)
        x = x + self.hook_attn_out(a)  # (B, T, C)
        a, cross_pattern = self.cross_attn(self.ln_2(x), context=memory, key_padding_mask=source_pad_mask)  # (B, T, C), (B, H, T, S)
        x = x + self.hook_cross_out(a)  # (B, T, C)
        x = x + self.hook_mlp_out(self.mlp(self.ln_3(x)))  # (B, T, C)
        return x, self_pattern, cross_pattern


class Seq2Seq(nn.Module):
    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.config = config
        self.token_emb = nn.Embedding(config.vocab_size, config.width)  # shared by both sides and the output
        self.source_pos = nn.Embedding(config.max_source, config.width)
        self.target_pos = nn.Embedding(config.max_target, config.width)
        self.encoder = nn.ModuleList(EncoderBlock(config) for _ in range(config.encoder_layers))
        self.ln_encoder = nn.LayerNorm(config.width)
        self.decoder = nn.ModuleList(DecoderBlock(config) for _ in range(config.decoder_layers))
        self.ln_f = nn.LayerNorm(config.width)
        self.hook_resid_final = HookPoint()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def embed(self, ids: torch.Tensor, pos: nn.Embedding) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)  # (T,)
        return self.token_emb(ids) + pos(positions)  # (B, T, C)

    def encode(self, source, source_pad_mask=None):
        """source (B, S) ids -> memory (B, S, C) and encoder patterns (L, B, H, S, S)."""
        if source.shape[1] > self.config.max_source:
            raise ValueError(f"source has {source.shape[1]} tokens, more than max_source {self.config.max_source}")
        x = self.embed(source, self.source_pos)  # (B, S, C)
        patterns = []
        for block in self.encoder:
            x, pattern = block(x, source_pad_mask)  # (B, S, C), (B, H, S, S)
            patterns.append(pattern)
        return self.ln_encoder(x), torch.stack(patterns)  # (B, S, C), (L, B, H, S, S)

    def decode(self, target, memory, source_pad_mask=None, target_pad_mask=None):
        """target (B, T) ids -> logits (B, T, V), decoder (L, B, H, T, T) and cross (L, B, H, T, S) patterns."""
        if target.shape[1] > self.config.max_target:
            raise ValueError(f"target has {target.shape[1]} tokens, more than max_target {self.config.max_target}")
        x = self.embed(target, self.target_pos)  # (B, T, C)
        self_patterns, cross_patterns = [], []
        for block in self.decoder:
            x, self_pattern, cross_pattern = block(x, memory, source_pad_mask, target_pad_mask)  # (B, T, C), (B, H, T, T), (B, H, T, S)
            self_patterns.append(self_pattern)
            cross_patterns.append(cross_pattern)
        logits = self.ln_f(self.hook_resid_final(x)) @ self.token_emb.weight.T  # (B, T, V)
        return logits, torch.stack(self_patterns), torch.stack(cross_patterns)  # (B, T, V), (L, B, H, T, T), (L, B, H, T, S)

    def forward(self, source, target, source_pad_mask=None, target_pad_mask=None):
        """Teacher-forced pass. Pad masks are (B, S) / (B, T) bool, True at padding.

        Returns logits (B, T, V) and {"encoder": (L, B, H, S, S), "decoder": (L, B, H, T, T),
        "cross": (L, B, H, T, S)}.
        """
        memory, encoder_patterns = self.encode(source, source_pad_mask)  # (B, S, C), (L, B, H, S, S)
        logits, decoder_patterns, cross_patterns = self.decode(target, memory, source_pad_mask, target_pad_mask)
        return logits, {"encoder": encoder_patterns, "decoder": decoder_patterns, "cross": cross_patterns}

    @torch.no_grad()
    def generate(self, source, start_id: int, end_id: int, source_pad_mask=None, steps: int | None = None):
        """Greedy decoding: (B, S) ids -> (B, 1 + n) ids, the start token then n predicted tokens.

        Every step re-runs the decoder over the whole prefix (no cache: simple, and exact).
        Stops when every row has produced `end_id`, or after `steps` (default max_target)
        predictions; the last one comes from decoder position max_target - 1.
        """
        steps = self.config.max_target if steps is None else min(steps, self.config.max_target)
        memory, _ = self.encode(source, source_pad_mask)  # (B, S, C)
        target = torch.full((source.shape[0], 1), start_id, dtype=torch.long, device=source.device)  # (B, 1)
        done = torch.zeros(source.shape[0], dtype=torch.bool, device=source.device)  # (B,)
        for _ in range(steps):
            logits, _, _ = self.decode(target, memory, source_pad_mask)  # (B, t, V)
            next_id = logits[:, -1].argmax(dim=-1)  # (B,)
            target = torch.cat([target, next_id[:, None]], dim=1)  # (B, t + 1)
            done |= next_id == end_id
            if done.all():
                break
        return target

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

