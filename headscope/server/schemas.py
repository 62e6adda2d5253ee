"""Pydantic schemas of every request and response, so that /docs is the API's true manual."""

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model
from pydantic_core import PydanticCustomError

from headscope.analyses.metrics import METRIC_DEFINITIONS, METRICS, MIN_KEPT
from headscope.analyses.playground import LIMITS as MHA_LIMITS
from headscope.analyses.playground import OURS as MHA_OURS
from headscope.analyses.playground import TEXTBOOK as MHA_TEXTBOOK
from headscope.analyses.roles import ROLES
from headscope.models.analysis import (
    DEFAULT_MAX_NEW_TOKENS,
    DIMS,
    MAX_CHARS_PER_TOKEN,
    MAX_NEW_TOKENS,
    Layout,
    ModelInfo,
)
from headscope.server.settings import LIMITS


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


class HeadRef(Request):
    kind: str = Field(description="An attention kind of the model (see `kinds` in GET /api/models).")
    layer: int = Field(ge=0)
    head: int = Field(ge=0)


class TextRequest(Request):
    """A text for one model to run, as /api/attention and /api/explain take it."""

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


# ---- ablation in /api/attention: knock heads out and measure the effect (headscope/models/interventions.py, headscope/models/effect.py) ----


class AblationRequest(Request):
    ablate: list[HeadRef] = Field(
        [],
        description="Heads to knock out (`kind`, `layer`, `head`), each at most once; at most as many as the model "
        "has heads (every kind's layers x heads; more gets 422 too_many_heads). The text runs un-ablated first "
        "(tokens, any generation), then again on the same tokens with these heads ablated: `attention`, `heads` "
        "and `similarity` are the ablated run's, `effect` compares the two. Models whose attention Headscope cannot "
        "reach head by head get 422.",
        examples=[[{"kind": "encoder", "layer": 2, "head": 5}]],
    )
    ablation: Literal["zero", "mean"] = Field(
        "zero",
        description="How a head is knocked out: its output z = pattern @ V (before the heads are concatenated and "
        "the output projection) is set to `zero`, or to its `mean` over the query positions of the pass (while "
        "generating: of the prefix so far). See docs/ablation.md.",
    )


class HeadsRequest(AblationRequest, TextRequest):
    """POST /api/heads: the text and options of an /api/attention request whose metrics are wanted."""


class AttentionRequest(AblationRequest, TextRequest):
    format: Literal["json", "compact", "safetensors"] = Field(
        "json",
        description="`json`: attention as nested lists of floats (at most `max_json_floats` weights, GET /api/models "
        "limits; above that use a binary format). `safetensors`: a safetensors file with one exact float32 tensor `attention.<kind>` per kind "
        "and every other field in its `__metadata__`. `compact`: the same, with each head as 8-bit bytes "
        "scaled to its maximum (tensors `attention.<kind>` uint8 and `scale.<kind>` float32 (L, H)); about "
        "4x smaller than safetensors and 13x smaller than json; what the page uses. See the 200 response.",
    )
    pool_to: int | None = Field(
        None, ge=8, le=4096,
        description="Max-pool every head so that neither side exceeds this many cells (a cell holds the "
        "largest weight of its block, so thin lines stay visible): what a thumbnail can show. The answer's "
        "`pool` gives each kind's block size. Omitted: full resolution.",
    )
    head: HeadRef | None = Field(
        None, description="Return the attention of this one head only: `attention` then holds only its kind, "
        "with shape [1, 1, query_pos, key_pos]. For opening one head at full resolution after a pooled grid.",
    )
    similarity: bool = Field(
        False,
        description="Also return the head-to-head Hellinger distance matrix and its clustering order "
        "(one matrix product: cheaper than the forward pass at any length); off by default.",
    )
    weights: Literal["attention", "value_norm"] = Field(
        "attention",
        description="What `attention` holds. `attention`: the weights α_ij after softmax (rows sum to 1). "
        "`value_norm`: ‖α_ij f(x_j)‖ with f(x_j) = (x_j W_V^h + b_V^h) W_O^h (Kobayashi et al. 2020), the size of "
        "what head h moves from key j into query i, in the hidden states' units; rows do not sum to 1. Same "
        "shapes and formats; the answer's `weights` says which it holds. Costs one more forward pass. "
        "Metrics and roles (`heads`) always describe the attention weights. docs/metrics.md.",
    )
    rollout: bool = Field(
        False,
        description="Also return `rollout`: per kind whose rows and columns are the same tokens (see `layout`), "
        "the attention rollout (Abnar & Zuidema 2020), Â_l = 0.5·mean_heads(A_l) + 0.5·I, rows renormalised, "
        "multiplied from the first layer up: [query_pos][key_pos], rows sum to 1. `rollout_about` says which "
        "kinds have one.",
    )
    metrics: bool = Field(
        True,
        description="Return every head's metrics and roles in `heads`. false: `heads` is null and the answer "
        "comes sooner; POST /api/heads with the same text and options soon after computes them from this "
        "answer's forward pass, without running the model again (what the page does: weights first, "
        "metrics next).",
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
    metrics: dict[str, MetricAbout] = Field(description="Every per-head metric of `heads` in an answer: what it is "
                                            "computed on and its formula in words.")


class BinaryAttention(BaseModel):
    """One attention kind in a safetensors answer (`format: compact` or `safetensors`): which tensor of the
    file holds it and how to read it. uint8: weight = byte / 255 * scale[layer][head], every weight
    within scale / 510 of the truth; float32: the exact weights."""

    dtype: Literal["uint8", "float32"]
    shape: list[int] = Field(description="[layers, heads, query_pos, key_pos]")
    tensor: str = Field(description="Name of the tensor in the safetensors file, `attention.<kind>`.")
    scale: str | None = Field(description="uint8 only: name of the float32 (layers, heads) tensor of each head's "
                              "largest weight, `scale.<kind>`.")


HeadMetrics = create_model(
    "HeadMetrics",
    __doc__="Per-head metrics of the tokens (never merged into words), null where undefined. `sink` is the weight "
    "on special tokens; `first_token`, `last_token` and `confidence` read the raw pattern; every other metric is "
    "computed with special query rows and special keys removed, each row renormalised to sum to 1 (rows that kept "
    f"under {MIN_KEPT} of their weight left out) and positions counted among the non-special tokens — the page's "
    "'hide special tokens' view. Formulas: docs/metrics.md.",
    **{name: (float | None, Field(description=METRIC_DEFINITIONS[name])) for name in METRICS},
)
CorpusMetricStd = create_model(
    "CorpusMetricStd",
    __doc__="Per metric, its standard deviation over the sentences where it is defined (divides by n); null "
    "where it is defined on none.",
    **{name: (float | None, Field()) for name in METRICS},
)
CorpusMetricCount = create_model(
    "CorpusMetricCount",
    __doc__="Per metric, n: on how many sentences it is defined, so entered its mean and std (nulls are left out).",
    **{name: (int, Field()) for name in METRICS},
)
RoleShare = create_model(
    "RoleShare",
    __doc__="Per role, the share of all sentences (0..1) on which the head had that role on its own.",
    **{name: (float, Field()) for name in ROLES},
)


class HeadSummary(BaseModel):
    layer: int
    head: int
    name: str = Field(description="Head name such as L0H2.")
    metrics: HeadMetrics  # type: ignore[valid-type]
    roles: list[str] = Field(description=f"Role labels from the metrics, any of: {', '.join(ROLES)}. What "
                             "they are the roles of (one text, or the means of a corpus) is the answer's `roles_of`.")


class CorpusHeadSummary(HeadSummary):
    std: CorpusMetricStd  # type: ignore[valid-type]
    n: CorpusMetricCount  # type: ignore[valid-type]
    role_share: RoleShare  # type: ignore[valid-type]


class Similarity(BaseModel):
    heads: list[str] = Field(description="Head names, in the order of the matrix rows.")
    distance: list[list[float]] = Field(
        description="Hellinger distance between two heads, 0..1: the root mean square over query rows of "
        "H(p, q) = sqrt(1 - sum_k sqrt(p_k q_k)). See docs/metrics.md."
    )
    order: list[int] = Field(description="Row order from average-linkage hierarchical clustering.")


class WeightsAbout(BaseModel):
    """What the `attention` arrays of an answer hold (the request's `weights`)."""

    name: Literal["attention", "value_norm"]
    label: str = Field(description="A short name for a colour bar or a column.")
    description: str = Field(description="The formula.")
    units: str = Field(description="`probability` for attention weights; for value norms, the norm of a "
                       "hidden-state vector.")
    rows_sum_to_one: bool = Field(description="True for attention weights; value norms are not probabilities.")
    max: dict[str, float] = Field(description="Per kind, the largest value sent: the top of a common colour scale.")


class BinaryRollout(BaseModel):
    """One kind's rollout in a safetensors answer: the float32 tensor `rollout.<kind>` of the file."""

    dtype: Literal["float32"]
    shape: list[int] = Field(description="[query_pos, key_pos]")
    tensor: str = Field(description="Name of the tensor in the safetensors file, `rollout.<kind>`.")


class RolloutAbout(BaseModel):
    formula: str
    dims: list[str] = Field(description="Axis names of every rollout array.")
    kinds: list[str] = Field(description="The kinds that have a rollout: those whose rows and columns are the same "
                             "tokens (self-attention, causal included).")
    skipped: dict[str, str] = Field(description="Kinds without one, and why.")
    not_counted: dict[str, list[str]] = Field(
        description="Per kind, other kinds that also bring information into its positions (cross-attention into a "
        "decoder) and are not part of its rollout.")
    rows_sum_to_one: bool = Field(description="True unless max-pooled (pool_to): each pooled cell holds its block's "
                                  "largest value.")
    pool: dict[str, list[int]] = Field(description="Per kind, [rows, columns] max-pooled into one cell (pool_to).")


class EffectMeasure(BaseModel):
    axis: Literal["tokens", "output_tokens"] | None = Field(
        description="The token sequence whose position i the measure's value[i] belongs to (the answer's `tokens` or "
        "`output_tokens`; a value may be shorter than it: a causal LM's last position has no next token); null "
        "for one number or one text."
    )
    meaning: str = Field(description="What the measure is, in words.")


class Effect(BaseModel):
    """What the ablation changed, measured against the same text un-ablated; which measures are present depends on
    the model (`measures` lists them). Definitions: docs/ablation.md."""

    embedding_cosine: float | None = Field(
        None, description="Encoder-only models: cosine of the mean-pooled sentence embeddings, with and without."
    )
    token_cosine: list[float | None] | None = Field(
        None, description="Encoder-only models: [token] cosine of each token's final hidden state."
    )
    targets: list[str] | None = Field(
        None, description="Models that predict tokens: [position] the token whose log-probability is given."
    )
    logprob_before: list[float | None] | None = Field(
        None, description="[position] log-probability of `targets` without the ablation."
    )
    logprob_after: list[float | None] | None = Field(
        None, description="[position] log-probability of `targets` with the ablation, on the same tokens."
    )
    loss_change: float | None = Field(None, description="Mean loss (nats) with the ablation minus without.")
    output_text: str | None = Field(
        None, description="Encoder–decoder models: the output generated again, greedily, with the heads ablated."
    )
    measures: dict[str, EffectMeasure] = Field(description="Every measure present: its axis and meaning.")


class AblationAnswer(BaseModel):
    ablate: list[HeadRef] = Field([], description="The heads knocked out, as requested; empty: none.")
    ablation: Literal["zero", "mean"] | None = Field(
        None, description="How they were knocked out; null when no head was."
    )
    effect: Effect | None = Field(
        None, description="With `ablate`: the effect on the output, against the same text un-ablated. The answer's "
        "tokens, output_text, output_tokens and output_probs are the un-ablated model's; its attention and heads are "
        "the ablated model's on those tokens."
    )


class OutputCheck(BaseModel):
    name: str = Field(description="What is checked, e.g. `valid date`.")
    ok: bool = Field(description="Whether the output passed the check.")
    label: str = Field(description="What a page shows for this result, e.g. `not a valid date`.")
    description: str = Field(description="The check in words.")


class AttentionResponse(AblationAnswer):
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
    format: Literal["json", "compact", "safetensors"]
    pool: dict[str, list[int]] = Field(
        description="Per kind, [rows, columns] of weights max-pooled into one cell of `attention` ([1, 1]: "
        "full resolution; see pool_to)."
    )
    selection: HeadRef | None = Field(None, description="The one head returned, when the request named `head`.")
    attention: dict[str, list[list[list[list[float]]]] | BinaryAttention] = Field(
        description="Per attention kind: weights (or value norms: see `weights`) indexed [layer][head][query_pos][key_pos]; `layout` says "
        "which tokens index the rows and columns."
    )
    heads: dict[str, list[HeadSummary]] | None = Field(
        description="Per attention kind, every head's metrics and roles; null when the request said "
        "`metrics: false` (then POST /api/heads returns them)."
    )
    roles_of: Literal["one text"] = Field(
        "one text", description="`heads` holds the metrics and roles of this one text: an anecdote. Average a "
        "corpus (POST /api/corpus) before saying what a head does."
    )
    similarity: dict[str, Similarity] | None = Field(
        None, description="Per kind, when requested: from the raw attention of every token, special tokens included."
    )
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
    output_probs: list[float] | None = Field(
        None, description="Per decoder row i, the probability the model gave the token that row produced "
        "(output token i+1; for the last row, the end token or the last token). High is confidence, not correctness.",
    )
    output_check: OutputCheck | None = Field(
        None, description="For models whose output has a checkable form (dates: a real calendar date in range), "
        "what was checked and whether the output passed; null for other models.")
    weights: WeightsAbout = Field(description="What `attention` holds: attention weights or value norms, with units.")
    rollout: dict[str, list[list[float]] | BinaryRollout] | None = Field(
        None, description="With `rollout: true`: per kind in `rollout_about.kinds`, [query_pos][key_pos].")
    rollout_about: RolloutAbout | None = Field(None, description="With `rollout: true`: what `rollout` holds.")


class HeadsResponse(BaseModel):
    """What POST /api/heads returns: the `heads` of /api/attention for the same request, and which
    tokens they were computed on."""

    model: str
    tokens: list[str] = Field(description="Input tokens exactly as the model sees them, special tokens included.")
    truncated: bool = Field(description="True when the text was cut to the model's maximum tokens.")
    heads: dict[str, list[HeadSummary]] = Field(description="Per attention kind, every head's metrics and roles.")


class CorpusError(BaseModel):
    index: int = Field(description="Position of the entry in `texts`.")
    error: str


class CorpusResponse(BaseModel):
    model: str
    sentences: int = Field(description="How many sentences were analysed and averaged.")
    errors: list[CorpusError] = Field(description="Entries that were skipped, and why.")
    heads: dict[str, list[CorpusHeadSummary]] = Field(
        description="Per kind, every head's metrics averaged over the sentences (a metric that is "
        "undefined on a sentence is left out of its mean and std; `n` says on how many it counted), roles from "
        "those means, and `role_share`: on what share of the sentences each role fired on its own."
    )
    roles_of: Literal["corpus means"] = Field(
        "corpus means", description="`roles` are the roles of the corpus means; `role_share` those of single sentences."
    )
    similarity: dict[str, Similarity] = Field(
        description="Per kind, the head-by-head Hellinger distance over the whole corpus: the root mean square of "
        "H(p, q) over every query row of every sentence (raw attention, special tokens included), and its "
        "clustering order."
    )


class ErrorResponse(BaseModel):
    error: str = Field(description="A short code such as too_many_tokens, validation_error, body_too_large.")
    detail: str = Field(description="What is wrong, in words.")
    errors: list[dict] | None = Field(None, description="For validation errors: each problem with its location.")


# ---- /api/explain: one head's computation for one query token ------------------------------------


class ExplainRequest(TextRequest):
    kind: str = Field(description="An attention kind of the model (GET /api/models `kinds`).", examples=["encoder"])
    layer: int = Field(description="Layer, from 0; out of range -> 422 naming the range.", examples=[2])
    head: int = Field(description="Head, from 0.", examples=[5])
    query: int = Field(
        description="Query position, from 0: a token of the sequence the kind's layout names for its rows.",
        examples=[3],
    )


class ArrayShape(BaseModel):
    shape: list[int] = Field(description="The array's shape in this answer.")
    axes: list[str] = Field(description="The name of each axis (query_pos, key_pos, d_head, d_model).")
    of: str = Field(description="The module's tensor the array is cut from.")
    of_shape: list[int] = Field(description="That tensor's shape in the forward pass (batch of one).")
    of_axes: list[str] = Field(description="That tensor's axes.")
    index: str = Field(description="The index taken from it, e.g. [0, head, query_pos].")
    note: str | None = Field(None, description="What more was done to it, if anything.")


class ExplainResponse(BaseModel):
    model: str
    kind: str
    layer: int
    head: int
    query: int = Field(description="The query position i.")
    name: str = Field(description="Head name such as L2H5.")
    layout: Layout = Field(description="Which token sequences index the rows (queries) and columns (keys).")
    query_tokens: list[str] = Field(description="The tokens of the rows: x's rows, queries.")
    key_tokens: list[str] = Field(description="The tokens of the columns: k, v, scores and weights rows.")
    heads: int = Field(description="H, heads in the layer.")
    d_model: int = Field(description="C, the model width.")
    d_head: int = Field(description="D = C / H, the width of one head's q, k, v and z.")
    scale: float = Field(description="The factor of the scores: 1 / sqrt(D), or what the family uses (T5: 1).")
    kv_heads: int = Field(description="H_kv, key/value heads: H, or fewer with grouped-query attention (Llama).")
    kv_group: int = Field(description="The key/value head this head reads: head // (H / H_kv).")
    rotary: bool = Field(description="True where q and k are after rotary position embeddings (Llama): rotated "
                         "by position, so q_i · k_j depends on the distance between i and j.")
    notes: list[str] = Field(description="What this model's attention does beyond the textbook steps, in words "
                             "(rotary embeddings, grouped-query heads, a position bias, a scale other than 1/√D).")
    position_bias: list[float] | None = Field(
        None, description="[Tk] T5's relative position bias added to the scores before the softmax; null where "
        "the model has none.")
    x: list[list[float]] = Field(
        description="[Tq, C] the attention's input, every query token: what the Q projection reads (and K and V in "
        "self-attention). After LayerNorm where the block is pre-LN (dates), the residual stream where it is "
        "post-LN (minilm)."
    )
    context: list[list[float]] | None = Field(
        None, description="[Tk, C] cross-attention only: what the K and V projections read (the encoder output)."
    )
    q: list[float] = Field(description="[D] q_i: this head's query for token i, x_i W_Q[head] + b.")
    k: list[list[float]] = Field(description="[Tk, D] k_j for every key j, this head.")
    v: list[list[float]] = Field(description="[Tk, D] v_j for every key j, this head.")
    qk: list[list[float]] = Field(
        description="[Tk, D] q_i ⊙ k_j, elementwise: row j sums to q_i · k_j, so its large entries show which "
        "dimensions make the score large. Unscaled, and given for masked keys too."
    )
    scores: list[float | None] = Field(
        description="[Tk] attn_scores: q_i · k_j · scale (+ position_bias where the model has one); null stands "
        "for -infinity, where key j is masked (causal: j > i; padding)."
    )
    masked: list[bool] = Field(description="[Tk] true where key j is masked (its score is -infinity, its weight 0).")
    weights: list[float] = Field(description="[Tk] softmax of the scores: the row i of the head's pattern.")
    z: list[float] = Field(description="[D] z_i = Σ_j weights_j v_j, this head's result for token i.")
    heads_z: list[float] = Field(
        description="[C] z_i of all H heads concatenated; head h fills [h*D, (h+1)*D)."
    )
    output: list[float] = Field(description="[C] heads_z @ W_Oᵀ + b_O: the attention's output for token i (T5 and "
                                "Llama have no b_O).")
    shapes: dict[str, ArrayShape] = Field(
        description="Per array: its shape and axes here, and the module's tensor it is cut from (its shape in the "
        "forward pass, batch of one) with the index taken."
    )


# ---- /api/mha: the torch.nn.MultiheadAttention playground ------------------------------------------


class MHALimitsModel(BaseModel):
    max_embed_dim: int = Field(description="Largest embed_dim, kdim and vdim.")
    max_heads: int = Field(description="Most num_heads.")
    max_length: int = Field(description="Largest L and S.")
    max_batch: int = Field(description="Largest N.")
    max_seed: int = Field(description="Largest seed.")


class MHARequest(Request):
    """nn.MultiheadAttention's constructor arguments, its call's options, and the sizes of the random inputs."""

    embed_dim: int = Field(64, ge=1, le=MHA_LIMITS.max_embed_dim, description="E, the query and output width.")
    num_heads: int = Field(8, ge=1, le=MHA_LIMITS.max_heads,
                           description="H; embed_dim must be divisible by it (each head has D = E / H).")
    kdim: int | None = Field(None, ge=1, le=MHA_LIMITS.max_embed_dim, description="Width of the keys; null: embed_dim.")
    vdim: int | None = Field(None, ge=1, le=MHA_LIMITS.max_embed_dim,
                             description="Width of the values; null: embed_dim.")
    bias: bool = Field(True, description="Biases in the input and output projections.")
    add_bias_kv: bool = Field(False, description="Append a learned key and value to every sequence (S' = S + 1).")
    add_zero_attn: bool = Field(False, description="Append a key and value of zeros (S' = S + 1 more).")
    batch_first: bool = Field(False, description="Inputs and output are (N, L, E) instead of (L, N, E).")
    L: int = Field(10, ge=1, le=MHA_LIMITS.max_length, description="Target (query) length.")
    S: int = Field(10, ge=1, le=MHA_LIMITS.max_length, description="Source (key and value) length.")
    N: int = Field(2, ge=1, le=MHA_LIMITS.max_batch, description="Batch size.")
    key_padding_mask: list[int] | list[list[bool]] | None = Field(
        None,
        description="Either N lengths, each 1..S (keys at positions >= length are padding), or N rows of S bools, "
        "true at padding (PyTorch's convention). Null: no padding.",
        examples=[[10, 7]],
    )
    causal: bool = Field(False, description="Pass an L x S bool attn_mask: query i may not attend to key j > i.")
    need_weights: bool = Field(True, description="Return the attention weights.")
    average_attn_weights: bool = Field(True, description="Average the weights over the heads (else one per head).")
    seed: int = Field(0, ge=0, le=MHA_LIMITS.max_seed, description="Seed of the random weights and inputs.")


class MHAInputShapes(BaseModel):
    query: list[int]
    key: list[int]
    value: list[int]
    key_padding_mask: list[int] | None
    attn_mask: list[int] | None


class MHAResponse(BaseModel):
    config: MHARequest = Field(description="The configuration run, kdim and vdim filled in.")
    code: str = Field(description="The Python a user would write for it; running it prints output_shape and "
                      "weights_shape, and reproduces `weights` (same seed, same order of draws).")
    input_shapes: MHAInputShapes = Field(description="Shapes of the tensors passed to the module.")
    output_shape: list[int] = Field(description="attn_output.shape as torch reports it.")
    weights_shape: list[int] | None = Field(description="attn_weights.shape as torch reports it; null when "
                                            "need_weights is false.")
    weights_axes: list[str] | None = Field(description="Names of the axes of weights_shape.")
    weights: list[list[float]] | list[list[list[float]]] | None = Field(
        description="The weights of batch element 0 only (to keep the answer small): [L, S'] averaged over heads, "
        "or [H, L, S'] per head, as average_attn_weights says. S' = S plus one per added key (key_labels)."
    )
    key_labels: list[str] = Field(description="A label per key column: 0..S-1, then bias_kv and/or zero_attn.")
    max_abs_diff: float = Field(description="Largest |difference| of output and weights between torch and "
                                "`compared_with`, over the whole batch.")
    compared_with: str = Field(
        description=f"{MHA_OURS}, Headscope's own module, where it applies (kdim = vdim = embed_dim, no "
        f"add_bias_kv or add_zero_attn); else {MHA_TEXTBOOK}, the same steps written out with those options."
    )


class MHAPreset(BaseModel):
    name: str
    title: str
    config: MHARequest


class MHAPresetsResponse(BaseModel):
    presets: list[MHAPreset] = Field(description="PyTorch docs' three classic shapes: outputs [10, 2, 64], "
                                     "[5, 3, 128] and [6, 4, 32].")
    limits: MHALimitsModel = Field(description="The largest request: within them any request takes a few ms.")
