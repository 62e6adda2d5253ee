"""What every model in Headscope hands to the rest of the program: one `Analysis` per text.

A model adapter (`headscope/models/minilm.py`, `headscope/models/dates.py`, `headscope/models/induction.py`, `headscope/models/hf/model.py`)
turns text into tokens, runs its network and returns the attention pattern of every layer and
head, per attention kind, as (L, H, Tq, Tk) tensors. Axes follow TransformerLens: layer, head,
query_pos, key_pos.

Nobody decides from a kind's *name* which tokens index its rows and columns or whether it is
causal: each kind comes with a `Layout` that says so, and every consumer (metrics, the API, the
page) reads it. The token lists a layout can name are the two sequences of an Analysis:
  "tokens"         the input text's tokens (and, for a causal LM asked to generate, its continuation)
  "output_tokens"  the positions of an encoder–decoder's decoder: the start token, then each output
  "patches"        an image model's positions (ModelInfo.takes == "image"): the class token, then the image's
                   patches row by row; `tokens` names them and `image` says the grid (headscope/models/digits.py)
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import torch

if TYPE_CHECKING:
    from headscope.models.interventions import Ablation

DIMS = ("layer", "head", "query_pos", "key_pos")
MAX_NEW_TOKENS = 128  # the most tokens any request may ask a model to generate
DEFAULT_MAX_NEW_TOKENS = 32  # what an encoder–decoder generates when the request does not say
# A text may have at most max_tokens * MAX_CHARS_PER_TOKEN characters (ModelInfo.max_chars), checked
# before it is tokenized, so that tokenizing (which holds the GIL: ~1 s per MB) stays short. Real
# text needs far fewer: English is ~4.5 characters per WordPiece token, and MiniLM's longest piece,
# "telecommunications", is 18 characters plus a space. Only texts made mostly of whitespace runs or
# of 32-character unknown words, which no tokenizer turns into many tokens, reach the limit.
MAX_CHARS_PER_TOKEN = 32

Axis = Literal["tokens", "output_tokens", "patches"]


@dataclass(frozen=True)
class Layout:
    """Which token sequence indexes the rows (queries) and the columns (keys) of an attention kind,
    and whether it is causal (query i sees only keys j <= i, so the upper triangle is exactly 0)."""

    rows: Axis
    columns: Axis
    causal: bool


SELF = Layout("tokens", "tokens", causal=False)  # an encoder's self-attention over the input
CAUSAL_SELF = Layout("tokens", "tokens", causal=True)  # a decoder-only (causal) model's self-attention
DECODER_SELF = Layout("output_tokens", "output_tokens", causal=True)  # an encoder–decoder's decoder
CROSS = Layout("output_tokens", "tokens", causal=False)  # decoder positions reading the encoder's input
PATCH_SELF = Layout("patches", "patches", causal=False)  # an image model's self-attention over class token + patches


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
    layers: int  # the most layers of any kind (an encoder–decoder's two stacks may differ)
    heads: int  # query heads per layer: one pattern per query head
    max_tokens: int  # input positions, special tokens included
    kinds: dict[str, Layout]  # attention kind -> its layout, in the order the model computes them
    # How the model generates, if it does: "output" (an encoder–decoder writes output_tokens) or
    # "continuation" (a causal LM continues the text in `tokens`); None if it does not generate.
    generation: Literal["output", "continuation"] | None = None
    max_new_tokens: int = 0  # the most tokens one request may ask it to generate
    default_new_tokens: int = 0  # how many it generates when the request does not say
    # Grouped-query attention: heads share key/value projections in groups; query head h reads the
    # keys and values of group h // (heads // kv_heads). None: every head has its own.
    kv_heads: int | None = None
    example: str = "The cat sat on the mat because it was warm."  # a text to try it on
    # The most characters a text may have, checked before tokenizing; 0 (the default) becomes
    # max_tokens * MAX_CHARS_PER_TOKEN.
    max_chars: int = 0
    takes: Literal["text", "image"] = "text"  # what the model reads: a text, or an image (headscope/models/digits.py)

    def __post_init__(self):
        if not self.max_chars:
            object.__setattr__(self, "max_chars", self.max_tokens * MAX_CHARS_PER_TOKEN)


class TooManyCharacters(ValueError):
    """The text is longer than a model's max_chars: refused before tokenizing."""

    def __init__(self, count: int, limit: int, model: str):
        self.count, self.limit, self.model = count, limit, model
        super().__init__(
            f"text has {count} characters but {model} takes at most {limit} (max_chars in GET /api/models: "
            f"{MAX_CHARS_PER_TOKEN} per token); shorten it or send truncate: true to cut it to fit"
        )


def cut_to_chars(info: ModelInfo, text: str, truncate: bool) -> tuple[str, bool]:
    """The text within info.max_chars, and whether it was cut; TooManyCharacters if it does not fit and
    truncate is False. Cutting characters first, then tokens, keeps the text's first tokens."""
    if len(text) <= info.max_chars:
        return text, False
    if not truncate:
        raise TooManyCharacters(len(text), info.max_chars, info.name)
    return text[: info.max_chars], True


@dataclass
class Analysis:
    model: str
    tokens: list[str]  # input tokens exactly as the model sees them, special tokens included
    offsets: list[tuple[int, int] | None]  # character span of each token in the text; None for special tokens
    special: list[bool]  # True where tokens[i] is a special token such as [CLS] or [SEP]
    words: list[int | None]  # the tokenizer's word index of each token (pieces of one word share it); None for specials
    patterns: dict[str, torch.Tensor]  # kind -> (L, H, Tq, Tk) float32 weights after softmax
    layout: dict[str, Layout]  # kind -> which tokens index its rows and columns, and whether it is causal
    truncated: bool = False  # True when the text was cut to fit the model
    generated: list[bool] | None = None  # causal LMs asked to continue: True where tokens[i] was generated
    output_text: str | None = None  # generated text, for encoder–decoders
    output_tokens: list[str] | None = None  # the decoder's positions: rows of decoder and cross patterns
    output_special: list[bool] | None = None  # True where output_tokens[i] is a special token
    output_words: list[int | None] | None = None  # word index of each output token; None for specials
    stopped: Literal["end", "length"] | None = None  # why generation stopped: the end token, or the limit
    # output_probs[i]: the probability the model gave the token that decoder row i produced
    # (output_tokens[i + 1], and for the last row the end token or the last character)
    output_probs: list[float] | None = None
    # Models whose output has a checkable form say what was checked, as data the page shows as it is:
    # {"name": "valid date", "ok": bool, "label": what to show, "description": what was checked}; None otherwise.
    output_check: dict | None = None
    # With an ablation (headscope/models/interventions.py): patterns are the ablated run's on the same tokens (and the same,
    # un-ablated output); effect says what the ablation changed (headscope/models/effect.py). None without one.
    effect: dict | None = None
    # Image models: the image's size, patch_size and patch_grid ([rows, cols]), the class token's position, the
    # classes, the prediction and each class's probability (headscope/models/digits.py); None for text models.
    image: dict | None = None

    def axis(self, name: Axis) -> list[str]:
        """The position list a layout names: `tokens`, `output_tokens`, or `patches` (an image model's positions,
        which `tokens` names)."""
        return self.output_tokens if name == "output_tokens" else self.tokens


@dataclass(frozen=True)
class Task:
    """A model's own evaluation data, for measures that need more than free text (head importance's default):
      "exact_match"  texts and the output each should produce (an encoder–decoder): share written exactly
      "span_loss"    texts whose next tokens are scored only on rows [span[0], span[1]) (a causal LM)
    """

    metric: Literal["exact_match", "span_loss"]
    measure: str  # the name the measure is reported under
    description: str  # what is measured on which data, in words
    texts: tuple[str, ...]
    expected: tuple[str, ...] | None = None  # exact_match: the output of each text
    span: tuple[int, int] | None = None  # span_loss: the scored rows, the same for every text


class AttentionModel(Protocol):
    """What the rest of Headscope may ask of a model. Every adapter is a headscope/models/adapter.py `Adapter`,
    which writes analyze and analyze_batch once from the model's own prepare, forward and regenerate."""

    info: ModelInfo

    def count_tokens(self, text: str) -> int:
        """How many input positions the text needs, special tokens included."""
        ...

    def analyze(self, text: str, truncate: bool = False, new_tokens: int | None = None,
                ablation: "Ablation | None" = None) -> Analysis:
        """Run one text. Raises TooManyTokens when it does not fit and truncate is False.

        new_tokens: for models that generate, the most tokens to generate (None: info.default_new_tokens).
        ablation: heads to knock out (headscope/models/interventions.py; BadAblation if the model lacks them); the
        Analysis then has the ablated patterns on the un-ablated tokens, and `effect` (headscope/models/effect.py).
        """
        ...

    def analyze_batch(self, texts: list[str], truncate: bool = False, new_tokens: int | None = None,
                      ablation: "Ablation | None" = None) -> list[Analysis]:
        """Run several texts, batched where the model can; each result equals `analyze` of that text."""
        ...

    def prepare(self, text: str, truncate: bool = False, new_tokens: int | None = None):
        """The text tokenized, and its output or continuation generated: a headscope/models/adapter.py Prepared."""
        ...

    def forward(self, batch: list) -> list:
        """One teacher-forced pass of prepared texts as the model runs now (inside any editing block): Outputs."""
        ...

    def regenerate(self, batch: list) -> list[str]:
        """Encoder–decoders: each prepared text's output written again as the model runs now."""
        ...

    def attention_modules(self) -> dict:
        """(kind, layer) -> the attention module that computes it (headscope/models/interventions.py)."""
        ...

    def output_projections(self) -> dict:
        """(kind, layer) -> the linear layer W_O that reads that attention module's heads concatenated."""
        ...

    def hook_points(self) -> dict:
        """(point, kind, layer) -> the HookPoint of resid_pre, attn_out, mlp_out, resid_final
        (headscope/models/interventions.py)."""
        ...

    def mlp_projections(self) -> dict:
        """(stack, layer) -> the MLP's last linear layer (its output is mlp_out)."""
        ...

    def readout(self):
        """The final norm and the unembedding: a headscope/models/adapter.py Readout (models that predict tokens)."""
        ...

    def output_ids(self, text: str) -> tuple[list[int], list[str]]:
        """The ids and tokens of a text as the model would write them next."""
        ...

    def with_output(self, prepared, other):
        """Encoder–decoders: one prepared text's input with another's decoder positions (teacher-forced)."""
        ...

    def own_task(self, n: int | None = None) -> Task | None:
        """The model's own evaluation data (head importance's default measure), or None."""
        ...
