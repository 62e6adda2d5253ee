"""POST /api/explain: one head's computation for one query token (the Mechanism view)."""

from pydantic import BaseModel, Field

from headscope.models.analysis import Layout
from headscope.server.schemas.common import TextRequest


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
    biases: dict[str, bool] = Field(description="`qkv`: whether the Q, K, V projections add biases b_Q, b_K, b_V; "
                                    "`output`: whether W_O adds b_O (Llama and T5: neither).")
    kv_group_heads: list[int] = Field(description="The query heads that read that key/value head (this one "
                                      "included): all H / H_kv of them share its k and v.")
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

