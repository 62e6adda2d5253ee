"""POST /api/importance: each head's importance and the pruning curve."""

from typing import Literal

from pydantic import BaseModel, Field

from headscope.models.interventions import AblationMode
from headscope.server.schemas.common import MetricRequest, Text


class ImportanceRequest(MetricRequest):
    """`metric` (with span, answer, wrong) replaces the default measure; omitted: the default measure."""

    model: str | None = Field(None, description="A model name from GET /api/models; omitted: the server's default.")
    texts: list[Text] | None = Field(
        None, min_length=1, description="Texts to measure on (at least one), at most `importance_max_texts` with `importance_max_tokens` tokens "
        "together (GET /api/models limits), each within the model's max_tokens. Omitted: the model's own set "
        "(dates: 500 held-out generated dates; induction: 100 random strings written twice; any other: 48 varied "
        "sentences), and for dates and induction their own measure (see `measure` in the answer).",
    )
    ablation: AblationMode = Field(
        "zero", description="How a head is knocked out: its output z = pattern @ V set to 0, or to its mean over "
        "the query positions of the text.",
    )
    stream: bool = Field(
        False, description="Answer with newline-delimited JSON progress lines, then the result (see 200)."
    )


class MeasureInfo(BaseModel):
    name: str = Field(description="exact_match, repeated_half_loss, embedding_cosine, next_token_loss, "
                      "output_logprob, or a chosen metric: loss, logit_diff, prob (docs/importance.md).")
    description: str
    direction: Literal["higher_is_better", "lower_is_better"]
    units: str
    examples: int = Field(description="How many texts or generated examples it averages over.")


class RemovedHead(BaseModel):
    kind: str
    layer: int
    head: int
    name: str


class PruningCurve(BaseModel):
    description: str
    removed: list[RemovedHead] = Field(description="Every head, in the order they are removed: ascending importance.")
    quality: list[float] = Field(description="len(removed) + 1 values: quality[k] with the first k heads ablated.")


class ImportanceResponse(BaseModel):
    model: str
    ablation: AblationMode
    measure: MeasureInfo
    importance_formula: str
    dims: list[str] = Field(description="Axes of `importance` and `ablated_quality` per kind: [layer][head].")
    baseline: float = Field(description="The measure with no head ablated.")
    importance: dict[str, list[list[float]]] = Field(
        description="kind -> [layer][head]: how much worse the measure is with that head alone ablated "
        "(positive: the head helps), in the measure's units.")
    ablated_quality: dict[str, list[list[float]]] = Field(
        description="kind -> [layer][head]: the measure with that head alone ablated.")
    curve: PruningCurve
    evaluations: int = Field(description="Evaluations of the measure: 1 + 2 x heads.")


IMPORTANCE_STREAM = {
    200: {
        "description": "With `stream: true`: newline-delimited JSON, one `{\"done\": n, \"total\": N, \"seconds\": s, "
        "\"remaining_s\": r}` line per evaluation of the measure (seconds so far; the seconds left at the pace so "
        "far), then `{\"result\": ImportanceResponse}`, or `{\"error\": code, \"detail\": "
        "words}` if it fails.",
        "content": {"application/x-ndjson": {}},
    }
}

