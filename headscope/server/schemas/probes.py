"""POST /api/probe and GET /api/probe/info: heads as classifiers of a relation between words."""

from pydantic import BaseModel, Field, create_model

from headscope.analyses.probes import FORMAT
from headscope.server.schemas.common import Request
from headscope.server.settings import LIMITS


class ProbeRequest(Request):
    pairs: str = Field(
        description=f"The pairs, as the text of a JSONL file. {FORMAT} At most `probe_max_chars` characters and "
        "`probe_max_pairs` pairs (GET /api/probe/info `limits`). A bad line is a 422 naming it.",
        examples=['{"sentence": "The cat sat on the mat.", "from": "the", "to": "mat"}'],
    )
    model: str | None = Field(None, description="A model name from GET /api/models; omitted: the server's default.")


PROBE_LIMITS = tuple(name for name in LIMITS if name.startswith("probe_"))  # the limits of POST /api/probe


ProbeLimits = create_model("ProbeLimits", **{name: (LIMITS[name][0], Field(description=LIMITS[name][1]))
                                             for name in PROBE_LIMITS})


class ProbeExample(BaseModel):
    name: str
    description: str
    file: str = Field(description="Where it is in the repository.")
    pairs: str = Field(description="Its JSONL text, ready for POST /api/probe.")


class ProbeInfo(BaseModel):
    format: str
    fields: list[str]
    definitions: dict[str, str]
    limits: ProbeLimits
    examples: list[ProbeExample]


class Skipped(BaseModel):
    line: int = Field(description="1-based line of the pairs text.")
    reason: str


class ProbeLayout(BaseModel):
    rows: str
    columns: str
    causal: bool


class KindAccuracy(BaseModel):
    layout: ProbeLayout
    accuracy: list[list[float]] = Field(description="[layer][head]: share of the pairs used that the head gets right.")
    correct: list[list[int]] = Field(description="[layer][head]: pairs the head gets right.")
    reachable: int = Field(description="Pairs a head of this kind can predict at all: all of them, or for a causal "
                           "kind those whose to-word is not after the from-word.")
    note: str | None = Field(description="Why some pairs cannot be predicted (a causal kind), else null.")


class OffsetAccuracy(BaseModel):
    offset: int
    pairs: int = Field(description="Pairs whose to-word is at this offset from the from-word.")
    accuracy: float


class Baseline(BaseModel):
    offset: int = Field(description="The best fixed offset, in words: to-word position − from-word position.")
    correct: int
    accuracy: float
    offsets: list[OffsetAccuracy] = Field(description="Every offset seen, in order.")


class BestHead(BaseModel):
    kind: str
    layer: int
    head: int
    name: str
    correct: int
    accuracy: float
    above_baseline: float = Field(description="accuracy − baseline accuracy.")


class ProbeResponse(BaseModel):
    model: str
    pairs: int = Field(description="Pairs used (not skipped); every accuracy is out of this.")
    sentences: int = Field(description="Distinct sentences run.")
    skipped: list[Skipped] = Field(description="Pairs the model could not use, and why.")
    dims: list[str] = Field(description="The axes of every `accuracy` and `correct`: [layer][head].")
    definitions: dict[str, str]
    kinds: dict[str, KindAccuracy] = Field(description="Every attention kind whose rows and columns are the input tokens.")
    baseline: Baseline
    best: list[BestHead] = Field(description="The most accurate heads over all kinds, best first.")

