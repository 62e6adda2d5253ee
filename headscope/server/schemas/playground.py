"""POST /api/mha and GET /api/mha/presets: the torch.nn.MultiheadAttention playground."""

from pydantic import BaseModel, Field

from headscope.analyses.playground import LIMITS as MHA_LIMITS
from headscope.analyses.playground import OURS as MHA_OURS
from headscope.analyses.playground import TEXTBOOK as MHA_TEXTBOOK
from headscope.server.schemas.common import Request


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


class MHAParameter(BaseModel):
    name: str = Field(description="As nn.MultiheadAttention.named_parameters() names it, e.g. in_proj_weight.")
    shape: list[int] = Field(description="Its shape as torch holds it.")
    symbols: list[str] = Field(description="The shape in the symbols of `sizes`, e.g. [\"3E\", \"E\"].")
    about: str = Field(description="What it is.")


class MHAStep(BaseModel):
    name: str = Field(description="q, k, v, attn_scores, pattern, z, z_concat, output.")
    title: str = Field(description="What the tensor is, in words.")
    shape: list[int] = Field(description="Its shape in the run.")
    dims: list[str] = Field(description="The names of its axes.")
    symbols: list[str] = Field(description="The shape in the symbols of `sizes`.")


class MHAResponse(BaseModel):
    config: MHARequest = Field(description="The configuration run, kdim and vdim filled in.")
    code: str = Field(description="The Python a user would write for it; running it prints output_shape and "
                      "weights_shape, and reproduces `weights` (same seed, same order of draws).")
    input_shapes: MHAInputShapes = Field(description="Shapes of the tensors passed to the module.")
    output_shape: list[int] = Field(description="attn_output.shape as torch reports it.")
    weights_shape: list[int] | None = Field(description="attn_weights.shape as torch reports it; null when "
                                            "need_weights is false.")
    weights_axes: list[str] | None = Field(description="Names of the axes of weights_shape.")
    weights: list[list[list[float]]] | list[list[list[list[float]]]] | None = Field(
        description="attn_weights of every batch element, as weights_shape and dims.weights say: [N, L, S'] averaged "
        "over heads, or [N, H, L, S'] per head. S' = S plus one per added key (key_labels)."
    )
    key_padding: list[list[bool]] = Field(description="[N, S'] (dims.key_padding): true where a key is padding "
                                          "(key_padding_mask); the appended keys never are.")
    dims: dict[str, list[str] | None] = Field(description="The axes of each array: weights (null without weights) "
                                              "and key_padding.")
    labels: dict[str, list[str]] = Field(description="A label per index of each axis: batch, head, query_pos, key_pos.")
    key_labels: list[str] = Field(description="A label per key column: 0..S-1, then bias_kv and/or zero_attn.")
    sizes: dict[str, int] = Field(description="The symbols of the shapes: N, L, S, S' (S plus appended keys), E, H, "
                                  "D (the module's head_dim = E / H), Ek (kdim), Ev (vdim).")
    parameters: list[MHAParameter] = Field(description="Every parameter of the module, as named_parameters() lists it.")
    steps: list[MHAStep] = Field(description="Every intermediate tensor of the computation (the textbook steps run "
                                 "on the same inputs, batch first), in order.")
    max_abs_diff: float = Field(description="Largest |difference| of output and weights between torch and "
                                "`compared_with`, over the whole batch.")
    compared_with_words: str = Field(description="What compared_with is, in plain words (the page's line).")
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

