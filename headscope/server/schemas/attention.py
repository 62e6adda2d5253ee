"""POST /api/attention (and its GET twin) and POST /api/heads: one text's attention, metrics, ablation effect."""

from typing import Literal

from pydantic import BaseModel, Field

from headscope.analyses.heads import SINK_SHARE
from headscope.analyses.rollout import COLLAPSED
from headscope.models.analysis import DIMS, Layout
from headscope.models.interventions import AblationMode
from headscope.server.encoding import BINARY_MEDIA_TYPE
from headscope.server.schemas.common import HeadRef, HeadSummary, MetricRequest, Similarity, TextRequest

Weights = Literal["attention", "value_norm"]  # what an answer's `attention` arrays hold
Format = Literal["json", "compact", "safetensors"]  # how an answer travels (headscope/server/encoding.py)


class AblationRequest(MetricRequest):
    """With `ablate`, `metric` (and span, answer, wrong) adds `effect.metric`: the metric before and after."""

    ablate: list[HeadRef] = Field(
        [],
        description="Heads to knock out (`kind`, `layer`, `head`), each at most once; at most as many as the model "
        "has heads (every kind's layers x heads; more gets 422 too_many_heads). The text runs un-ablated first "
        "(tokens, any generation), then again on the same tokens with these heads ablated: `attention`, `heads` "
        "and `similarity` are the ablated run's, `effect` compares the two. Models whose attention Headscope cannot "
        "reach head by head get 422.",
        examples=[[{"kind": "encoder", "layer": 2, "head": 5}]],
    )
    ablation: AblationMode = Field(
        "zero",
        description="How a head is knocked out: its output z = pattern @ V (before the heads are concatenated and "
        "the output projection) is set to `zero`, or to its `mean` over the query positions of the pass (while "
        "generating: of the prefix so far). See docs/ablation.md.",
    )


class HeadsRequest(AblationRequest, TextRequest):
    """POST /api/heads: the text and options of an /api/attention request whose metrics are wanted."""


class AttentionRequest(AblationRequest, TextRequest):
    format: Format = Field(
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
    weights: Weights = Field(
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


class BinaryAttention(BaseModel):
    """One attention kind in a safetensors answer (`format: compact` or `safetensors`): which tensor of the
    file holds it and how to read it. uint8: weight = byte / 255 * scale[layer][head], every weight
    within scale / 510 of the truth; float32: the exact weights."""

    dtype: Literal["uint8", "float32"]
    shape: list[int] = Field(description="[layers, heads, query_pos, key_pos]")
    tensor: str = Field(description="Name of the tensor in the safetensors file, `attention.<kind>`.")
    scale: str | None = Field(description="uint8 only: name of the float32 (layers, heads) tensor of each head's "
                              "largest weight, `scale.<kind>`.")


class WeightsAbout(BaseModel):
    """What the `attention` arrays of an answer hold (the request's `weights`)."""

    name: Weights
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
    collapsed: dict[str, dict | None] = Field(
        default_factory=dict, description=f"Per kind, {{key, mean_weight}} when one key position holds at least "
        f"{COLLAPSED:.0%} of the rollout's rows on average (deep causal models without BOS collapse onto their first "
        "token): then the rollout says little more than that; null otherwise.")


class EffectMeasure(BaseModel):
    axis: Literal["tokens", "output_tokens", "classes"] | None = Field(
        description="The token sequence whose position i the measure's value[i] belongs to (the answer's `tokens` or "
        "`output_tokens`; a value may be shorter than it: a causal LM's last position has no next token), or "
        "`classes` (an image model's `image.classes`); null for one number or one text."
    )
    meaning: str = Field(description="What the measure is, in words.")


class MetricEffect(BaseModel):
    name: str = Field(description="loss, logit_diff or prob (headscope/models/metric_choice.py).")
    description: str
    units: str
    where: str = Field(description="Which positions it reads: the span of `tokens`, or the last position.")
    span: list[int] | None = Field(description="loss: the [start, end) of `tokens` scored; null otherwise.")
    answer: dict | None = Field(description="{text, id, token} of the answer; null for loss.")
    wrong: dict | None = Field(description="{text, id, token} of the wrong answer; logit_diff only.")
    before: float = Field(description="Without the ablation.")
    after: float = Field(description="With the heads ablated, on the same tokens.")
    change: float = Field(description="after - before, in `units` (loss: positive = worse; logit_diff, prob: "
                          "negative = worse).")


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
    prediction: str | None = Field(
        None, description="Image models: the class predicted with the heads ablated (compare `image.prediction`)."
    )
    probabilities: list[float] | None = Field(
        None, description="Image models: [class] each class's probability with the heads ablated (classes as "
        "`image.classes`)."
    )
    metric: MetricEffect | None = Field(None, description="With `metric` in the request (causal LMs): that metric "
                                        "without and with the ablation.")
    measures: dict[str, EffectMeasure] = Field(description="Every measure present: its axis and meaning.")


class AblationAnswer(BaseModel):
    ablate: list[HeadRef] = Field([], description="The heads knocked out, as requested; empty: none.")
    ablation: AblationMode | None = Field(
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


class ImageAnswer(BaseModel):
    """What an image model read and predicted (`image` of an answer; null for text models). The positions (rows and
    columns of every kind whose layout says `patches`) are the ones that are no patch (`not_patches`: the class
    token, DeiT's distillation token, DINOv2's registers), then the patches row by row from `first_patch`; `tokens`
    names them ("[CLS]", "[REG0]", "r0c0", ...)."""

    size: list[int] = Field(description="[height, width] in pixels of the picture the network read (`seen`).")
    channels: int = Field(description="1: grey; 3: RGB.")
    patch_size: list[int] = Field(description="[height, width] of a patch in pixels.")
    patch_grid: list[int] = Field(description="[rows, cols] of patches; patch (r, c) is position "
                                  "first_patch + r * cols + c.")
    class_token: int = Field(description="The position of the class token.")
    first_patch: int = Field(description="The position of patch r0c0.")
    not_patches: list[int] = Field(description="The positions that are no patch (class, distillation, register "
                                   "tokens).")
    predicts: bool = Field(description="False for a feature model (no classifier head): `classes` is empty, "
                           "`prediction` and `probabilities` null.")
    pad: bool = Field(description="True when the model reads drawings a person makes at its own size (the page's "
                      "pad); false: upload a picture.")
    classes: list[str] = Field(description="The label of each class, in the order of `probabilities`.")
    prediction: str | None = Field(description="The class with the highest probability (un-ablated); null when "
                                   "`predicts` is false.")
    probabilities: list[float] | None = Field(description="[class] softmax of the logits (un-ablated); null when "
                                              "`predicts` is false.")
    inverted: bool = Field(description="True when the picture was inverted to fit the model (digits: mostly "
                           "bright paper made dark, ink bright).")
    seen: str = Field(description="A `data:image/png;base64,...` PNG of exactly the pixels the network read "
                      "(`size`): what to lay attention over.")


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
    format: Format
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
    sinks: dict[str, list[int]] | None = Field(
        None, description="Per attention kind, the text positions its metrics treated as attention sinks although "
        f"they are not special tokens (measured: on average over the kind's heads, at least {SINK_SHARE:.0%} of the "
        "weight of the text queries after them; e.g. the first token of a model that puts no BOS). Like special tokens, they count "
        "in `sink` and are removed, with rows renormalised, from the positional metrics. Null without `heads`."
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
    image: ImageAnswer | None = Field(None, description="Image models: the grid, what was read and predicted; "
                                      "null for text models.")
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
    sinks: dict[str, list[int]] | None = Field(
        None, description="Per attention kind, the text positions its metrics treated as attention sinks although "
        f"they are not special tokens (measured: on average over the kind's heads, at least {SINK_SHARE:.0%} of the "
        "weight of the text queries after them; e.g. the first token of a model that puts no BOS). Like special tokens, they count "
        "in `sink` and are removed, with rows renormalised, from the positional metrics. Null without `heads`."
    )



BINARY_RESPONSE = {
    200: {
        "description": "`format: json`: the JSON below. `format: safetensors` or `compact`: a safetensors file "
        "(8-byte little-endian header length n, n bytes of JSON header, the tensors' bytes). Its `__metadata__` "
        "holds every field below, each as a JSON-encoded string, with `attention` mapping each kind to a "
        "BinaryAttention that names its tensor. `headscope.server.encoding.read_safetensors` decodes it in Python; any "
        "safetensors reader reads the tensors.",
        "content": {BINARY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
    }
}

