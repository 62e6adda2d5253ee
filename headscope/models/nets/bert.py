"""A BERT-family encoder built from our own MultiHeadAttention (post-LayerNorm, GELU MLP).

It runs all-MiniLM-L6-v2 (6 layers x 12 heads, width 384) from its Hugging Face
safetensors file; `load_bert_weights` maps those names onto ours. Each block has hook points
(headscope/models/interventions.py `HookPoint`): hook_resid_pre (its input), hook_attn_out and hook_mlp_out (what
each adds to the stream before its LayerNorm).

Legend: B batch, T tokens, C model width, H heads, L layers, M MLP width.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from headscope.models.attention import MultiHeadAttention
from headscope.models.interventions import HookPoint


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    max_positions: int = 512
    type_vocab_size: int = 2
    width: int = 384
    heads: int = 12
    layers: int = 6
    mlp_width: int = 1536
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_hf_config(cls, path: Path) -> "BertConfig":
        c = json.loads(Path(path).read_text())
        return cls(
            vocab_size=c["vocab_size"],
            max_positions=c["max_position_embeddings"],
            type_vocab_size=c["type_vocab_size"],
            width=c["hidden_size"],
            heads=c["num_attention_heads"],
            layers=c["num_hidden_layers"],
            mlp_width=c["intermediate_size"],
            layer_norm_eps=c["layer_norm_eps"],
        )


class Embeddings(nn.Module):
    """Token + position + segment embeddings, then LayerNorm."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word = nn.Embedding(config.vocab_size, config.width)
        self.position = nn.Embedding(config.max_positions, config.width)
        self.token_type = nn.Embedding(config.type_vocab_size, config.width)
        self.ln = nn.LayerNorm(config.width, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        T = input_ids.shape[1]
        positions = torch.arange(T, device=input_ids.device)  # (T,)
        x = self.word(input_ids) + self.position(positions) + self.token_type.weight[0]  # (B, T, C)
        return self.ln(x)  # (B, T, C)


class MLP(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.fc_in = nn.Linear(config.width, config.mlp_width)
        self.fc_out = nn.Linear(config.mlp_width, config.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(nn.functional.gelu(self.fc_in(x)))  # (B, T, M) -> (B, T, C)


class EncoderBlock(nn.Module):
    """Post-LN block, as in BERT: x = LN(x + attn(x)); x = LN(x + mlp(x))."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attn = MultiHeadAttention(config.width, config.heads)
        self.ln_attn = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.mlp = MLP(config)
        self.ln_mlp = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.hook_resid_pre, self.hook_attn_out, self.hook_mlp_out = HookPoint(), HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None, pattern_out: torch.Tensor):
        x = self.hook_resid_pre(x)  # (B, T, C)
        attn_out, _ = self.attn(x, key_padding_mask=key_padding_mask, pattern_out=pattern_out)  # (B, T, C)
        x = self.ln_attn(x + self.hook_attn_out(attn_out))  # (B, T, C)
        x = self.ln_mlp(x + self.hook_mlp_out(self.mlp(x)))  # (B, T, C)
        return x


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.blocks = nn.ModuleList(EncoderBlock(config) for _ in range(config.layers))

    def forward(self, input_ids: torch.Tensor, key_padding_mask: torch.Tensor | None = None):
        """input_ids (B, T); key_padding_mask (B, T) True at padding.

        Returns the last hidden state (B, T, C) and every layer's pattern (L, B, H, T, T).
        """
        B, T = input_ids.shape
        x = self.embeddings(input_ids)  # (B, T, C)
        # Each layer writes its pattern straight into its slice: no copy to stack them after.
        patterns = x.new_empty(len(self.blocks), B, self.config.heads, T, T)  # (L, B, H, T, T)
        for block, pattern in zip(self.blocks, patterns, strict=True):
            x = block(x, key_padding_mask, pattern_out=pattern)  # (B, T, C), pattern filled (B, H, T, T)
        return x, patterns  # (B, T, C), (L, B, H, T, T)


def load_bert_weights(encoder: BertEncoder, path: Path) -> None:
    """Copy a Hugging Face BertModel safetensors file into `encoder` (strict: every tensor used)."""
    from safetensors.torch import load_file

    hf = load_file(str(path))
    ours = {
        "embeddings.word.weight": hf["embeddings.word_embeddings.weight"],
        "embeddings.position.weight": hf["embeddings.position_embeddings.weight"],
        "embeddings.token_type.weight": hf["embeddings.token_type_embeddings.weight"],
        "embeddings.ln.weight": hf["embeddings.LayerNorm.weight"],
        "embeddings.ln.bias": hf["embeddings.LayerNorm.bias"],
    }
    for i in range(encoder.config.layers):
        src, dst = f"encoder.layer.{i}.", f"blocks.{i}."
        for part in ("weight", "bias"):
            ours[dst + f"attn.qkv.{part}"] = torch.cat(
                [hf[src + f"attention.self.{name}.{part}"] for name in ("query", "key", "value")]
            )
            ours[dst + f"attn.out_proj.{part}"] = hf[src + f"attention.output.dense.{part}"]
            ours[dst + f"ln_attn.{part}"] = hf[src + f"attention.output.LayerNorm.{part}"]
            ours[dst + f"mlp.fc_in.{part}"] = hf[src + f"intermediate.dense.{part}"]
            ours[dst + f"mlp.fc_out.{part}"] = hf[src + f"output.dense.{part}"]
            ours[dst + f"ln_mlp.{part}"] = hf[src + f"output.LayerNorm.{part}"]
    encoder.load_state_dict(ours, strict=True)
