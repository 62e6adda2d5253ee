"""Pydantic schemas of every request and response, so that /docs is the API's true manual."""

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model
from pydantic_core import PydanticCustomError

from model.analysis import DIMS
from model.metrics import METRIC_DEFINITIONS, METRICS
from model.roles import ROLES


def _check_text(text: str) -> str:
    if not text.strip():
        raise PydanticCustomError("empty_text", "text is empty or only whitespace")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise PydanticCustomError(
            "invalid_unicode", "text is not valid Unicode: lone surrogate at character {position}", {"position": e.start}
        ) from None
    return text


Text = Annotated[str, AfterValidator(_check_text)]


class Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class AttentionRequest(Request):
    text: Text = Field(description="The text to analyse.", examples=["The cat sat on the mat because it was warm."])
    model: str = Field("minilm", description="A model name from GET /api/models.")
    truncate: bool = Field(
        False, description="Cut text that is longer than the model's maximum tokens instead of refusing it."
    )
    format: Literal["json", "compact"] = Field(
        "json",
        description="`json`: attention as nested lists of floats. `compact`: a binary body with the attention "
        "as bytes, 8-bit scaled per head, and the rest as a JSON header (see the 200 response and "
        "CompactAttention); about 13x smaller than json, what the page uses.",
    )
    similarity: bool = Field(
        False,
        description="Also return the head-to-head Jensen-Shannon distance matrix and its clustering order. "
        "Costs O((layers*heads)^2 * tokens^2); off by default.",
    )


class CorpusRequest(Request):
    texts: list[str] = Field(
        min_length=1,
        description="Sentences to average head metrics over. Entries that are empty or too long are "
        "reported in `errors` and skipped, not fatal.",
    )
    model: str = Field("minilm", description="A model name from GET /api/models.")
    truncate: bool = Field(False, description="Cut sentences longer than the model's maximum tokens.")
    stream: bool = Field(
        False, description="Answer with newline-delimited JSON progress lines, then the result (see 200)."
    )


class ModelOut(BaseModel):
    name: str
    description: str
    layers: int
    heads: int
    max_tokens: int = Field(description="Longest input, in tokens, special tokens included.")
    kinds: list[str] = Field(description="Attention kinds this model returns: encoder, decoder, cross.")


class ModelsResponse(BaseModel):
    default: str
    models: list[ModelOut]


class CompactAttention(BaseModel):
    """One attention kind in the compact encoding: bytes offset .. offset+length of the attention bytes, a
    row-major uint8 array of `shape` (layer, head, query_pos, key_pos); weight = byte / 255 *
    scale[layer][head]. `scale` is each head's largest weight, so every head uses the full byte
    range and every weight is within scale / 510 of the truth."""

    dtype: Literal["uint8"] = "uint8"
    shape: list[int] = Field(description="[layers, heads, query tokens, key tokens]")
    scale: list[list[float]] = Field(description="[layer][head] largest weight of the head")
    offset: int = Field(description="Where this kind's bytes start, counted from the end of the header.")
    length: int = Field(description="How many bytes.")


HeadMetrics = create_model(
    "HeadMetrics",
    __doc__="Per-head metrics on the default view (special tokens included); null where undefined. "
    "Formulas: docs/metrics.md.",
    **{name: (float | None, Field(description=METRIC_DEFINITIONS[name])) for name in METRICS},
)


class HeadSummary(BaseModel):
    layer: int
    head: int
    name: str = Field(description="Head name such as L0H2.")
    metrics: HeadMetrics  # type: ignore[valid-type]
    roles: list[str] = Field(description=f"Role labels from the metrics, any of: {', '.join(ROLES)}.")


class Similarity(BaseModel):
    heads: list[str] = Field(description="Head names, in the order of the matrix rows.")
    distance: list[list[float]] = Field(
        description="Jensen-Shannon distance (base 2, 0..1) between two heads' rows, averaged over rows."
    )
    order: list[int] = Field(description="Row order from average-linkage hierarchical clustering.")


class AttentionResponse(BaseModel):
    model: str
    tokens: list[str] = Field(description="Input tokens exactly as the model sees them, special tokens included.")
    offsets: list[tuple[int, int] | None] = Field(
        description="[start, end) character span of each token in `text`; null for special tokens."
    )
    special: list[bool] = Field(description="True where the token is a special token added by the model.")
    truncated: bool = Field(description="True when the text was cut to the model's maximum tokens.")
    dims: list[str] = Field(list(DIMS), description="Axis names of every attention array.")
    format: Literal["json", "compact"]
    attention: dict[str, list[list[list[list[float]]]] | CompactAttention] = Field(
        description="Per attention kind (encoder, decoder, cross): weights indexed "
        "[layer][head][query_pos][key_pos]. encoder: tokens x tokens; decoder: output_tokens x "
        "output_tokens (zero above the diagonal); cross: output_tokens x tokens."
    )
    heads: dict[str, list[HeadSummary]] = Field(description="Per attention kind, every head's metrics and roles.")
    similarity: dict[str, Similarity] | None = Field(None, description="Per kind, when requested.")
    output_text: str | None = Field(None, description="Generated text, for models with a decoder.")
    output_tokens: list[str] | None = Field(
        None,
        description="The decoder's positions (rows of decoder and cross attention): the start token, then "
        "each generated token. Row i produced output token i+1; the last row produced the end token.",
    )


class CorpusError(BaseModel):
    index: int = Field(description="Position of the entry in `texts`.")
    error: str


class CorpusResponse(BaseModel):
    model: str
    sentences: int = Field(description="How many sentences were analysed and averaged.")
    errors: list[CorpusError] = Field(description="Entries that were skipped, and why.")
    heads: dict[str, list[HeadSummary]] = Field(
        description="Per kind, every head's metrics averaged over the sentences (a metric that is "
        "undefined on a sentence is left out of its average) and roles from those averages."
    )


class ErrorResponse(BaseModel):
    error: str = Field(description="A short code such as too_many_tokens, validation_error, body_too_large.")
    detail: str = Field(description="What is wrong, in words.")
    errors: list[dict] | None = Field(None, description="For validation errors: each problem with its location.")
