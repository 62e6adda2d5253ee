"""A small Vision Transformer (Dosovitskiy et al. 2021, "An image is worth 16x16 words"), nanoGPT style.

The image is cut into non-overlapping P x P patches, read row by row (patch (r, c) is position 1 + r * cols + c);
each patch's pixels are flattened and projected to the model width; a learned class token is put first; learned
position embeddings are added; pre-LayerNorm blocks of bidirectional self-attention (headscope/models/attention.py's
`MultiHeadAttention`) and an MLP follow; the class token's final state, normalised, is classified.

Legend: B batch, S image side (pixels), P patch side, G = S // P patches per side, N = G * G patches, T = N + 1
positions (the class token first), C model width, H heads, L layers, K classes.
"""

from dataclasses import dataclass

import torch
from torch import nn

from headscope.models.attention import MultiHeadAttention


@dataclass(frozen=True)
class ViTConfig:
    image_size: int = 8  # S: images are S x S pixels, one channel
    patch_size: int = 2  # P: patches are P x P pixels
    classes: int = 10  # K
    layers: int = 3
    heads: int = 4
    width: int = 64
    mlp_width: int = 128
    dropout: float = 0.1  # on the embeddings and each residual branch, in training only

    @property
    def grid(self) -> int:
        """G: patches per side."""
        return self.image_size // self.patch_size

    @property
    def positions(self) -> int:
        """T: the class token and G * G patches."""
        return 1 + self.grid * self.grid


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, S, S) -> (B, N, P * P): patches row by row, each patch's pixels row by row."""
    B, S, _ = images.shape
    G, P = S // patch_size, patch_size
    x = images.reshape(B, G, P, G, P).permute(0, 1, 3, 2, 4)  # (B, G, G, P, P): grid row, grid col, pixel row, pixel col
    return x.reshape(B, G * G, P * P)  # (B, N, P * P)


class MLP(nn.Module):
    def __init__(self, config: ViTConfig):
        super().__init__()
        self.fc = nn.Linear(config.width, config.mlp_width)
        self.proj = nn.Linear(config.mlp_width, config.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(nn.functional.gelu(self.fc(x)))  # (B, T, C)


class Block(nn.Module):
    """Self-attention of every position to every position, then an MLP (pre-LayerNorm, as ViT)."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.width)
        self.attn = MultiHeadAttention(config.width, config.heads)
        self.ln_2 = nn.LayerNorm(config.width)
        self.mlp = MLP(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor):
        a, pattern = self.attn(self.ln_1(x))  # (B, T, C), (B, H, T, T)
        x = x + self.drop(a)  # (B, T, C)
        x = x + self.drop(self.mlp(self.ln_2(x)))  # (B, T, C)
        return x, pattern


class ViT(nn.Module):
    def __init__(self, config: ViTConfig):
        super().__init__()
        if config.image_size % config.patch_size:
            raise ValueError(f"image_size {config.image_size} is not divisible by patch_size {config.patch_size}")
        self.config = config
        self.patch_emb = nn.Linear(config.patch_size * config.patch_size, config.width)  # a patch's pixels -> C
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.width))
        self.pos_emb = nn.Parameter(torch.zeros(1, config.positions, config.width))
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.ln_f = nn.LayerNorm(config.width)
        self.head = nn.Linear(config.width, config.classes)
        self.apply(self._init_weights)
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.pos_emb, std=0.02)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, S, S), pixels scaled to [0, 1] -> logits (B, K) and patterns (L, B, H, T, T)."""
        hidden, patterns = self.features(images)  # (B, T, C), (L, B, H, T, T)
        return self.head(hidden[:, 0]), patterns  # (B, K): the class token's final state, classified

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, S, S) -> the final, normalised hidden states (B, T, C) and patterns (L, B, H, T, T)."""
        B, S, S2 = images.shape
        if S != self.config.image_size or S2 != self.config.image_size:
            raise ValueError(f"images are {S} x {S2}, the model takes {self.config.image_size} x {self.config.image_size}")
        x = self.patch_emb(patchify(images, self.config.patch_size))  # (B, N, C)
        x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1) + self.pos_emb  # (B, T, C)
        x = self.drop(x)
        patterns = []
        for block in self.blocks:
            x, pattern = block(x)  # (B, T, C), (B, H, T, T)
            patterns.append(pattern)
        return self.ln_f(x), torch.stack(patterns)  # (B, T, C), (L, B, H, T, T)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
