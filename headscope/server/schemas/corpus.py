"""POST /api/corpus: per-head metrics averaged over many sentences."""

from typing import Literal

from pydantic import BaseModel, Field, create_model

from headscope.analyses.metrics import METRICS
from headscope.analyses.roles import ROLES
from headscope.server.schemas.common import HeadSummary, Request, Similarity


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


class CorpusHeadSummary(HeadSummary):
    std: CorpusMetricStd  # type: ignore[valid-type]
    n: CorpusMetricCount  # type: ignore[valid-type]
    role_share: RoleShare  # type: ignore[valid-type]


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



CORPUS_STREAM = {
    200: {
        "description": "With `stream: true`: newline-delimited JSON, one `{\"done\": n, \"total\": N}` line per "
        "batch, then `{\"result\": CorpusResponse}`, or `{\"error\": code, \"detail\": words}` if it fails.",
        "content": {"application/x-ndjson": {}},
    }
}

