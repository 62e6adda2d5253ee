"""Pydantic schemas of every request and response, so that /docs is the API's true manual."""

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model
from pydantic_core import PydanticCustomError

from model.analysis import DEFAULT_MAX_NEW_TOKENS, DIMS, MAX_CHARS_PER_TOKEN, MAX_NEW_TOKENS, Layout, ModelInfo
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


# minLength: says in the OpenAPI schema part of what _check_text enforces (a constraint here would change
# how pydantic reads the string: a lone surrogate would no longer reach _check_text's clear message)
Text = Annotated[str, Field(json_schema_extra={"minLength": 1}), AfterValidator(_check_text)]


class Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class AttentionRequest(Request):
    text: Text = Field(
        description="The text to analyse: at least one character that is not whitespace, at most the model's "
        "`max_chars` (GET /api/models) unless `truncate`.",
        examples=["The cat sat on the mat because it was warm."],
    )
    model: str | None = Field(None, description="A model name from GET /api/models; omitted: the server's default.")
    truncate: bool = Field(
        False, description="Cut text that is longer than the model's `max_chars` characters or `max_tokens` tokens "
        "instead of refusing it: characters first, then tokens."
    )
    format: Literal["json", "compact"] = Field(
        "json",
        description="`json`: attention as nested lists of floats. `compact`: a binary body with the attention "
        "as bytes, 8-bit scaled per head, and the rest as a JSON header (see the 200 response and "
        "CompactAttention); about 13x smaller than json, what the page uses. A json answer may hold at most "
        "`max_json_floats` weights (GET /api/models limits).",
    )
    similarity: bool = Field(
        False,
        description="Also return the head-to-head Jensen-Shannon distance matrix and its clustering order. "
        "Costs O((layers*heads)^2 * tokens^2); off by default.",
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


class CorpusRequest(Request):
    texts: list[str] = Field(
        min_length=1,
        description="Sentences to average head metrics over. Entries that are empty or too long are "
        "reported in `errors` and skipped, not fatal.",
    )
    model: str | None = Field(None, description="A model name from GET /api/models; omitted: the server's default.")
    truncate: bool = Field(False, description="Cut sentences longer than the model's maximum tokens.")
    stream: bool = Field(
        False, description="Answer with newline-delimited JSON progress lines, then the result (see 200)."
    )


class Limits(BaseModel):
    """Every limit of a request, from the server's Settings. A text's limits are per model: `max_tokens` and
    `max_chars` in `models`."""

    max_body_bytes: int = Field(description="Largest request body, in bytes; larger gets 413.")
    max_json_floats: int = Field(
        description="Most attention weights (layers x heads x query x key, all kinds) in a `format: json` answer; "
        "larger gets 422: ask for `format: compact`."
    )
    max_waiting: int = Field(description="Requests that may wait for the model at once; more get 503 and Retry-After.")
    corpus_max_texts: int = Field(description="Most sentences in one /api/corpus request.")
    corpus_max_tokens: int = Field(description="Most tokens in one /api/corpus request, all sentences together.")
    max_new_tokens: int = Field(description="Most tokens one request may ask any model to generate.")
    max_connections: int = Field(
        description="Open connections; beyond it a new one closes the longest-idle one, or gets 503 if none is idle."
    )
    max_header_bytes: int = Field(description="Largest request line and headers, in bytes; larger gets 431.")
    header_timeout_s: float = Field(description="Seconds a connection has to send its request line and headers.")
    body_timeout_s: float = Field(description="Seconds a request body has to arrive; slower gets 408.")
    send_timeout_s: float = Field(description="Seconds a client may leave its answer unread before it is dropped.")


class ModelsResponse(BaseModel):
    default: str = Field(description="The model a request without `model` uses: the first one served.")
    models: list[ModelInfo] = Field(
        description="Every model served. `kinds` maps each attention kind to its layout: which token "
        "sequence indexes the rows (queries) and the columns (keys) — `tokens` or `output_tokens` of an "
        "answer — and whether it is causal. `generation`: `output` (an encoder–decoder writes "
        "output_tokens; see max_new_tokens), `continuation` (a causal LM continues the text; see "
        "generate), or null. `kv_heads`: with grouped-query attention, query head h shares the keys "
        "and values of group h // (heads // kv_heads). `max_chars`: the most characters a text may have, "
        f"checked before it is tokenized: `max_tokens` times {MAX_CHARS_PER_TOKEN}, more than any real text "
        "of `max_tokens` tokens needs."
    )
    limits: Limits


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
    words: list[int | None] = Field(
        description="The tokenizer's word index of each token: pieces of one word share it; null for special "
        "tokens and characters that stand alone."
    )
    generated: list[bool] | None = Field(
        None, description="Causal models asked to `generate`: true where the token is the model's continuation."
    )
    dims: list[str] = Field(list(DIMS), description="Axis names of every attention array.")
    layout: dict[str, Layout] = Field(
        description="Per attention kind: `rows` and `columns` name the token sequence (`tokens` or "
        "`output_tokens`) that indexes query_pos and key_pos; `causal`: weights above the diagonal are 0."
    )
    format: Literal["json", "compact"]
    attention: dict[str, list[list[list[list[float]]]] | CompactAttention] = Field(
        description="Per attention kind: weights indexed [layer][head][query_pos][key_pos]; `layout` says "
        "which tokens index the rows and columns."
    )
    heads: dict[str, list[HeadSummary]] = Field(description="Per attention kind, every head's metrics and roles.")
    similarity: dict[str, Similarity] | None = Field(None, description="Per kind, when requested.")
    output_text: str | None = Field(None, description="Generated text, for models with a decoder.")
    output_tokens: list[str] | None = Field(
        None,
        description="The decoder's positions (rows of decoder and cross attention): the start token, then "
        "each generated token. Row i produced output token i+1; the last row produced the end token.",
    )
    output_special: list[bool] | None = Field(None, description="True where the output token is a special token.")
    output_words: list[int | None] | None = Field(None, description="Word index of each output token, as `words`.")
    stopped: Literal["end", "length"] | None = Field(
        None, description="Why generation stopped: the model's end token, or the token limit."
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
