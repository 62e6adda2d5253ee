"""GET /api/models: every model served, every limit, every metric."""

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field, create_model

from headscope.models.analysis import MAX_CHARS_PER_TOKEN, ModelInfo
from headscope.server.settings import LIMITS

Limits = create_model(
    "Limits",
    __doc__="Every limit the server enforces on clients, from its Settings (headscope/server/settings.py), each "
    "with its value. A text's limits are per model: `max_tokens` and `max_chars` in `models`.",
    **{name: (kind, Field(description=about)) for name, (kind, about) in LIMITS.items()},
)


class MetricAbout(BaseModel):
    basis: Literal["raw", "renormalised"] = Field(description="`raw`: on the pattern as the model made it; "
                                                  "`renormalised`: special keys removed, each row rescaled to sum to 1.")
    description: str


class ImageInfoAnswer(BaseModel):
    """What an image model reads (headscope/models/images.py ImageInfo)."""

    size: tuple[int, int] = Field(description="[height, width] in pixels the network reads; any picture is fitted "
                                  "to it (docs/images.md).")
    channels: int = Field(description="1: grey; 3: RGB.")
    patch_size: tuple[int, int] = Field(description="[height, width] of a patch in pixels.")
    patch_grid: tuple[int, int] = Field(description="[rows, cols] of patches.")
    class_token: int = Field(description="The class token's position.")
    classes: tuple[str, ...] = Field(description="The label of each output class; empty when `predicts` is false.")
    first_patch: int = Field(description="The position of patch r0c0; patch (r, c) is first_patch + r * cols + c.")
    not_patches: tuple[int, ...] = Field(description="The positions that are no patch (class, distillation, "
                                         "register tokens).")
    predicts: bool = Field(description="False for a feature model (no classifier head): no classes, no prediction.")
    pad: bool = Field(description="True when the model reads drawings a person makes at its own size (the page's "
                      "digit pad); false: the page offers upload only.")


@dataclass(frozen=True)
class ModelEntry(ModelInfo):
    """A served model: its ModelInfo, and `image`: what an image model (`takes: image`) reads; null for text models."""

    image: ImageInfoAnswer | None = None


class ModelsResponse(BaseModel):
    default: str = Field(description="The model a request without `model` uses: the first one served.")
    models: list[ModelEntry] = Field(
        description="Every model served. `kinds` maps each attention kind to its layout: which token "
        "sequence indexes the rows (queries) and the columns (keys) — `tokens` or `output_tokens` of an "
        "answer — and whether it is causal. `generation`: `output` (an encoder–decoder writes "
        "output_tokens; see max_new_tokens), `continuation` (a causal LM continues the text; see "
        "generate), or null. `kv_heads`: with grouped-query attention, query head h shares the keys "
        "and values of group h // (heads // kv_heads). `max_chars`: the most characters a text may have, "
        f"checked before it is tokenized: `max_tokens` times {MAX_CHARS_PER_TOKEN}, more than any real text "
        "of `max_tokens` tokens needs. `takes`: what the model reads, `text` or "
        "`image` (send POST /api/attention `image` instead of `text`; `image` says what it reads)."
    )
    limits: Limits
    metrics: dict[str, MetricAbout] = Field(description="Every per-head metric of `heads` in an answer: what it is "
                                            "computed on and its formula in words.")

