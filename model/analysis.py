"""What every model in Headscope hands to the rest of the program: one `Analysis` per text.

A model adapter (`model/minilm.py`, `model/dates.py`) turns text into tokens, runs its
network and returns the attention patterns of every layer and head, per attention kind:
  encoder  self-attention over the input tokens        (L, H, len(tokens), len(tokens))
  decoder  masked self-attention over the output tokens (L, H, len(output_tokens), len(output_tokens))
  cross    output tokens attending to input tokens     (L, H, len(output_tokens), len(tokens))
Axes follow TransformerLens: layer, head, query_pos, key_pos.
"""

from dataclasses import dataclass, field
from typing import Protocol

import torch

DIMS = ("layer", "head", "query_pos", "key_pos")
KINDS = ("encoder", "decoder", "cross")


class TooManyTokens(ValueError):
    """The text needs more positions than the model has."""

    def __init__(self, count: int, limit: int, model: str):
        self.count, self.limit, self.model = count, limit, model
        super().__init__(
            f"text has {count} tokens but {model} takes at most {limit}; "
            "shorten it or send truncate: true to cut it to fit"
        )


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    layers: int
    heads: int
    max_tokens: int
    kinds: tuple[str, ...]


@dataclass
class Analysis:
    model: str
    tokens: list[str]  # input tokens exactly as the model sees them, special tokens included
    offsets: list[tuple[int, int] | None]  # character span of each token in the text; None for special tokens
    special: list[bool]  # True where tokens[i] is a special token such as [CLS] or [SEP]
    patterns: dict[str, torch.Tensor]  # kind -> (L, H, Tq, Tk) float32 weights after softmax
    truncated: bool = False  # True when the text was cut to fit the model
    output_text: str | None = None  # generated text, for models with a decoder
    output_tokens: list[str] | None = None  # the decoder's positions: rows of decoder and cross patterns
    extra: dict = field(default_factory=dict)


class AttentionModel(Protocol):
    info: ModelInfo

    def count_tokens(self, text: str) -> int:
        """How many input positions the text needs, special tokens included."""
        ...

    def analyze(self, text: str, truncate: bool = False) -> Analysis:
        """Run one text. Raises TooManyTokens when it does not fit and truncate is False."""
        ...

    def analyze_batch(self, texts: list[str], truncate: bool = False) -> list[Analysis]:
        """Run several texts in padded batches; each result equals `analyze` of that text."""
        ...
