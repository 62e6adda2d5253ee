"""What every request and answer shares: strict requests, a text, a head, a text for one model, an error, and
per-head summaries (metrics, roles, similarity)."""

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model
from pydantic_core import PydanticCustomError

from headscope.analyses.metrics import METRIC_DEFINITIONS, METRICS, MIN_KEPT
from headscope.analyses.roles import ROLES
from headscope.models.analysis import DEFAULT_MAX_NEW_TOKENS, MAX_NEW_TOKENS
from headscope.models.metric_choice import MetricName
from headscope.server.errors import ErrorCode


def check_unicode(text: str) -> str:
    """text, or the validation error naming its first lone surrogate."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise PydanticCustomError(
            "invalid_unicode", "text is not valid Unicode: lone surrogate at character {position}", {"position": e.start}
        ) from None
    return text


def _check_text(text: str) -> str:
    if not text.strip():
        raise PydanticCustomError("empty_text", "text is empty or only whitespace")
    return check_unicode(text)


# minLength: says in the OpenAPI schema part of what _check_text enforces (a constraint here would change
# how pydantic reads the string: a lone surrogate would no longer reach _check_text's clear message)
Text = Annotated[str, Field(json_schema_extra={"minLength": 1}), AfterValidator(_check_text)]


class Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


MAX_TOKEN_CHARS = 256  # an answer is one token: this bounds the tokenizing of one that is not


def _check_token(text: str) -> str:
    if not 1 <= len(text) <= MAX_TOKEN_CHARS:
        raise PydanticCustomError("string_length", "a token's text has 1 to {most} characters", {"most": MAX_TOKEN_CHARS})
    return check_unicode(text)


# One token as text: may be only whitespace (" " is a token of byte-level models); longer texts get a 422 that says
# how they tokenize. Lengths are checked in _check_token, as common.Text does, so a lone surrogate gets its message.
Token = Annotated[str, Field(json_schema_extra={"minLength": 1, "maxLength": MAX_TOKEN_CHARS}),
                  AfterValidator(_check_token)]


class MetricRequest(Request):
    """The metric choice ablation and importance share (headscope/models/metric_choice.py): causal LMs only."""

    metric: MetricName | None = Field(
        None, description="Causal LMs (others get 422 no_metric): `loss`, the mean next-token cross-entropy (nats per "
        "token) of the tokens in `span`; `logit_diff`, logit(answer) - logit(wrong) at the last position (the "
        "prediction of the next token); `prob`, the answer's probability there. See docs/importance.md.")
    span: list[int] | None = Field(
        None, min_length=2, max_length=2, description="metric loss: [start, end) of the scored tokens among the "
        "text's `tokens` (token j is predicted by position j - 1, so 1 <= start < end <= T; else 422 out_of_range "
        "with the valid range). Omitted: every token after the first.", examples=[[17, 33]])
    answer: Token | None = Field(None, description="metric logit_diff and prob: the answer, one token of the model "
                                 "(else 422 not_one_token saying how it tokenizes).")
    wrong: Token | None = Field(None, description="metric logit_diff: the wrong answer, one token of the model.")


class HeadRef(Request):
    kind: str = Field(description="An attention kind of the model (see `kinds` in GET /api/models).")
    layer: int = Field(ge=0)
    head: int = Field(ge=0)


class TextRequest(Request):
    """A text (or, for an image model, an image) for one model to run, as /api/attention and /api/explain take it."""

    # Text with a default of None (not `Text | None`): sending null is refused as not a string, and the schema keeps
    # minLength; omitted, the route says what the model takes (headscope/server/inputs.py)
    text: Text = Field(
        None,
        description="The text to analyse: at least one character that is not whitespace, at most the model's "
        "`max_chars` (GET /api/models) unless `truncate`. Required for a model that takes text (`takes` in GET "
        "/api/models); an image model answers 422 `wrong_input`.",
        examples=["The cat sat on the mat because it was warm."],
    )
    image: str = Field(
        None,
        description="Image models only (`takes: image` in GET /api/models), instead of `text`: a PNG or JPEG file "
        "in base64, optionally as a data URL (`data:image/png;base64,...`); at most `max_image_bytes` bytes and "
        "`max_image_pixels` pixels (GET /api/models limits). 8-bit grey, RGB, RGBA or palette; animated, CMYK and "
        "16-bit images get 422 `bad_image`. The model fits it to what it reads (its `image.size`); the answer's "
        "`image.seen` is what it read. A text model answers 422 `wrong_input`.",
    )
    model: str | None = Field(None, description="A model name from GET /api/models; omitted: the server's default.")
    truncate: bool = Field(
        False, description="Cut text that is longer than the model's `max_chars` characters or `max_tokens` tokens "
        "instead of refusing it: characters first, then tokens."
    )
    max_new_tokens: int | None = Field(
        None, ge=1, le=MAX_NEW_TOKENS,
        description="Encoder–decoder models: the most output tokens to generate (greedy). Omitted: the "
        f"model's `default_new_tokens` from GET /api/models ({DEFAULT_MAX_NEW_TOKENS} for Hugging Face "
        "checkpoints). Refused for models that do not write an output.",
    )
    generate: int = Field(
        0, ge=0, le=MAX_NEW_TOKENS,
        description="Causal (decoder-only) models: first continue the text greedily by this many tokens, then "
        "show attention over the text and its continuation (`generated` marks the new tokens). Refused "
        "for models that do not continue text.",
    )


HeadMetrics = create_model(
    "HeadMetrics",
    __doc__="Per-head metrics of the tokens (never merged into words), null where undefined. `sink` is the weight "
    "on special tokens; `first_token`, `last_token` and `confidence` read the raw pattern; every other metric is "
    "computed with special query rows and special keys removed, each row renormalised to sum to 1 (rows that kept "
    f"under {MIN_KEPT} of their weight left out) and positions counted among the non-special tokens — the page's "
    "'hide special tokens' view. Formulas: docs/metrics.md.",
    **{name: (float | None, Field(description=METRIC_DEFINITIONS[name])) for name in METRICS},
)


class HeadSummary(BaseModel):
    layer: int
    head: int
    name: str = Field(description="Head name such as L0H2.")
    metrics: HeadMetrics  # type: ignore[valid-type]
    roles: list[str] = Field(description=f"Role labels from the metrics, any of: {', '.join(ROLES)}. What "
                             "they are the roles of (one text, or the means of a corpus) is the answer's `roles_of`.")


class Similarity(BaseModel):
    heads: list[str] = Field(description="Head names, in the order of the matrix rows.")
    distance: list[list[float]] = Field(
        description="Hellinger distance between two heads, 0..1: the root mean square over query rows of "
        "H(p, q) = sqrt(1 - sum_k sqrt(p_k q_k)). See docs/metrics.md."
    )
    order: list[int] = Field(description="Row order from average-linkage hierarchical clustering.")


class ErrorResponse(BaseModel):
    error: ErrorCode = Field(description="What went wrong, as a code (GET /openapi.json lists them all, each with "
                             "its status and meaning in headscope/server/errors.py).")
    detail: str = Field(description="What is wrong, in words.")
    errors: list[dict] | None = Field(None, description="For validation errors: each problem with its location.")



# status -> the OpenAPI response of every error with that status, for every route
ERROR_RESPONSES = {
    status: {"model": ErrorResponse,
             "description": "; ".join(f"`{c.value}`: {c.meaning}" for c in ErrorCode if c.status == status)}
    for status in sorted({c.status for c in ErrorCode})
}
