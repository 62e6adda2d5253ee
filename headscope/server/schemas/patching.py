"""POST /api/patch (activation patching) and POST /api/attribute (direct logit attribution)."""

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field
from pydantic_core import PydanticCustomError

from headscope.analyses.patching import DIRECTION_ABOUT, RECOVERY, Direction, Metric, Mode
from headscope.server.schemas.common import Request, Text, Token

MODEL = "A model name from GET /api/models; omitted: the server's default."
STEP = ("Encoder–decoders: the output step whose token is the answer (0-based; the decoder is teacher-forced on the "
        "clean text's greedy output). Omitted: ")


class PatchRequest(Request):
    model: str | None = Field(None, description=MODEL)
    clean: Text = Field(description="The clean prompt.", examples=["k#9Qz.m>Ab k#9Qz.m>A"])
    corrupted: Text = Field(description="The corrupted prompt: the same number of tokens as `clean` (else a 422 "
                            "showing both tokenizations).", examples=["xY7!pw@3Rq k#9Qz.m>A"])
    answer: Token | None = Field(None, description="The clean answer: one token of the model (else a 422 saying how "
                                 "it tokenizes). Required for models that predict tokens; refused for encoders.",
                                 examples=["b"])
    wrong: Token | None = Field(None, description="The wrong answer the corruption leads to, one token: required for "
                                "metric logit_diff.", examples=["Y"])
    metric: Metric | None = Field(None, description="logit_diff: logit(answer) - logit(wrong) where the answer is "
                                  "predicted; prob: the answer's probability there; embedding_cosine (encoders): the "
                                  "cosine of the sentence embedding to the clean run's. Omitted: logit_diff, or "
                                  "embedding_cosine for an encoder.")
    patch: Mode = Field("heads", description="heads: each head's output z at every position; head_positions: one "
                        "head at one query position; residual: the residual stream entering each layer at one "
                        "position; layers: each attention output and MLP output at one position.")
    direction: Direction = Field("denoise", description="; ".join(f"{k}: {v}" for k, v in DIRECTION_ABOUT.items()))
    step: int | None = Field(None, ge=0, description=STEP + "the first step where the clean and corrupted outputs "
                             "differ (0 if they do not).")
    stream: bool = Field(False, description="Answer with newline-delimited JSON progress lines, then the result "
                         "(see 200).")


class TokenChoice(BaseModel):
    text: str
    id: int
    token: str = Field(description="The token as the model's vocabulary writes it.")


class PatchMetric(BaseModel):
    name: Metric
    description: str
    units: str
    where: str | None = Field(description="Where the metric is read: the last position, or an output step.")
    answer: TokenChoice | None
    wrong: TokenChoice | None


class Prompt(BaseModel):
    text: str
    tokens: list[str]


class PatchMap(BaseModel):
    name: str = Field(description="KIND.POINT, after TransformerLens' hook names: decoder.z, encoder.resid_pre, "
                      "cross.attn_out, decoder.mlp_out ...")
    point: Literal["z", "resid_pre", "attn_out", "mlp_out"]
    kind: str = Field(description="The attention kind (z, attn_out) or the stack (resid_pre, mlp_out).")
    dims: list[Literal["layer", "head", "position"]] = Field(description="The axes of `patched` and `recovery`.")
    labels: dict[str, list[str]] = Field(description="Each axis's labels: L0.., H0.., and the clean prompt's tokens "
                                         "for positions.")
    position_axis: Literal["tokens", "output_tokens"] | None = Field(
        description="Which token list the position axis indexes: the input's, or the decoder's positions.")
    patched: list = Field(description="The metric with that one activation patched, shaped as `dims`.")
    recovery: list = Field(description=f"{RECOVERY}, shaped as `dims`; null everywhere when clean and corrupted "
                           "give the same metric.")


class PatchResponse(BaseModel):
    model: str
    clean: Prompt
    corrupted: Prompt
    output_tokens: list[str] | None = Field(description="Encoder–decoders: the decoder's positions, from the clean "
                                            "output (start token first); both runs read them.")
    step: int | None
    metric: PatchMetric
    patch: Mode
    direction: Direction
    direction_about: str
    clean_metric: float
    corrupted_metric: float
    recovery_formula: str
    recovery_note: str | None
    maps: list[PatchMap]
    cells: int = Field(description="Activations patched, one at a time.")
    forward_passes: int = Field(description="Forward passes run: the two recorded runs, then one per batch of cells.")


PATCH_STREAM = {
    200: {
        "description": "With `stream: true`: newline-delimited JSON, `{\"done\": n, \"total\": N}` lines (cells "
        "patched so far), then `{\"result\": PatchResponse}`, or `{\"error\": code, \"detail\": words}` if it fails.",
        "content": {"application/x-ndjson": {}},
    }
}


class AttributeRequest(Request):
    model: str | None = Field(None, description=MODEL)
    text: Text = Field(description="The prompt.", examples=["k#9Qz.m>Ab k#9Qz.m>A"])
    answer: Token = Field(description="One token of the model.", examples=["b"])
    wrong: Token = Field(description="One token of the model.", examples=["Y"])
    step: int | None = Field(None, ge=0, description=STEP + "0.")


class Component(BaseModel):
    name: str
    type: Literal["head", "mlp", "embed", "bias"]
    kind: str | None = Field(description="The attention kind (heads, attention biases) or stack (MLPs).")
    layer: int | None
    head: int | None
    value: float = Field(description="Its direct contribution to logit(answer) - logit(wrong), in logits.")


class FrozenNorm(BaseModel):
    form: Literal["LayerNorm", "RMSNorm"]
    scale: float = Field(description="s, the final norm's scale in this run, held fixed.")
    readout_scale: float = Field(description="c, a constant between the norm and the unembedding (T5: "
                                 "d_model^-0.5; 1 for most families), measured.")
    frozen: bool
    about: str


class AttributeResponse(BaseModel):
    model: str
    text: str
    tokens: list[str]
    output_tokens: list[str] | None
    step: int | None
    position: int = Field(description="The position read: the last token, or the decoder row of `step`.")
    position_axis: Literal["tokens", "output_tokens"]
    position_token: str
    answer: TokenChoice
    wrong: TokenChoice
    metric: str
    components: list[Component]
    total: float = Field(description="The model's own logit(answer) - logit(wrong) there.")
    sum: float = Field(description="The sum of the components' values.")
    error: float = Field(description="sum - total.")
    tolerance: float = Field(description="How far sum may be from total (float rounding); tests check it.")
    norm: FrozenNorm
    about: str


class PredictRequest(Request):
    model: str | None = Field(None, description=MODEL)
    text: Text = Field(description="The prompt (a causal LM's; others get 422 no_metric).",
                       examples=["When Mary and John went to the store, John gave a drink to"])
    k: int = Field(5, ge=1, description="How many predictions, at most `predict_max_k` (GET /api/models limits).")


class Prediction(BaseModel):
    id: int
    token: str = Field(description="The token as the model's tokens are shown.")
    text: str | None = Field(description="The text `answer` / `wrong` take for this token (one token read back to "
                             "this id); null when no text is (a byte of a multi-byte character, a special token).")
    prob: float = Field(description="Its probability as the next token (softmax over the vocabulary).")


class PredictResponse(BaseModel):
    model: str
    tokens: list[str] = Field(description="The prompt's tokens.")
    where: str = Field(description="Where the prediction is read: the last position.")
    predictions: list[Prediction] = Field(description="The k most probable next tokens, by descending probability.")
