"""POST /api/probe and GET /api/probe/info: heads as classifiers of a relation between words (headscope/analyses/probes.py).

Its own router, schemas and example sets, so that the rest of the API does not change. The model
work goes through the runner as /api/corpus's does: one job to tokenize the distinct sentences,
then one job per batch, so other requests get their turn in between.
"""


import anyio
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, create_model

from headscope.analyses.probes import (
    DEFINITIONS,
    FIELDS,
    NotProbeable,
    NoUsablePairs,
    PairsError,
    TooManyPairs,
    batches,
    pairs_of,
    parse_pairs,
    plan_probe,
    probe_kinds,
    summarize,
    tally_batch,
)
from headscope.data import PROBE_SETS
from headscope.server.encoding import json_response
from headscope.server.errors import ApiError
from headscope.server.routes.api import ERRORS, ModelsDep, RunnerDep, SettingsDep, pick_model
from headscope.server.schemas import Request as StrictRequest
from headscope.server.settings import LIMITS, Settings, public_limits

EXAMPLES_DIR = PROBE_SETS
EXAMPLES = {  # file stem -> what its pairs are (the files: headscope/data/probe_sets/*.jsonl, described in docs/probes.md)
    "det_noun": "determiner → its noun (\"the\" → \"cat\"): 45 pairs in 20 sentences",
    "obj_verb": "direct object → its verb (\"mouse\" → \"chased\"): 45 pairs in 45 sentences",
}
FORMAT = (
    "JSONL: one object per line, {\"sentence\": str, \"from\": str, \"to\": str, \"from_occurrence\"?: int, "
    "\"to_occurrence\"?: int}. from and to are a word's exact text in the sentence, matched as a whole word; a text "
    "that occurs more than once needs its *_occurrence (1 = the first). Blank lines are ignored."
)

router = APIRouter(prefix="/api", responses=ERRORS)
class ProbeRequest(StrictRequest):
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


def examples() -> list[dict]:
    return [{"name": name, "description": description, "file": f"headscope/data/probe_sets/{name}.jsonl",
             "pairs": (EXAMPLES_DIR / f"{name}.jsonl").read_text(encoding="utf-8")}
            for name, description in EXAMPLES.items()]


def limits(settings: Settings) -> dict:
    """The probe limits of GET /api/models `limits`, again."""
    published = public_limits(settings)
    return {name: published[name] for name in PROBE_LIMITS}


@router.get("/probe/info", response_model=ProbeInfo)
def probe_info(settings: SettingsDep):
    """What POST /api/probe takes (the pairs format, its limits) and computes, with example pair sets."""
    return json_response({"format": FORMAT, "fields": list(FIELDS), "definitions": DEFINITIONS,
                          "limits": limits(settings), "examples": examples()})


async def read_pairs(req: ProbeRequest, settings: Settings):
    """The request's pairs, or the 422 that says what is wrong with them."""
    if len(req.pairs) > settings.probe_max_chars:
        raise ApiError(422, "too_many_characters", f"pairs has {len(req.pairs)} characters; the limit is "
                       f"{settings.probe_max_chars} (probe_max_chars in GET /api/probe/info)", count=len(req.pairs),
                       limit=settings.probe_max_chars)
    try:  # on a worker thread: ~0.1 s for the largest text allowed, which the event loop need not wait out
        return await anyio.to_thread.run_sync(parse_pairs, req.pairs, settings.probe_max_pairs)
    except TooManyPairs as e:
        raise ApiError(422, "too_many_pairs", f"{e} (probe_max_pairs in GET /api/probe/info)", count=e.count,
                       limit=e.limit) from None
    except PairsError as e:
        raise ApiError(422, "invalid_pairs", str(e), lines=[{"line": line, "error": what} for line, what in e.problems]) from None


@router.post("/probe", response_model=ProbeResponse)
async def probe(req: ProbeRequest, request: Request, models: ModelsDep, runner: RunnerDep, settings: SettingsDep):
    """Each head as a classifier of a relation (Clark et al. 2019): for every (sentence, from, to) pair, does the
    word the from-word attends to most equal the to-word? Accuracy [layer][head] per kind, beside the best
    fixed-offset baseline."""
    model = pick_model(models, req.model)
    try:
        probe_kinds(model.info)
    except NotProbeable as e:
        raise ApiError(422, "not_probeable", str(e)) from None
    pairs = await read_pairs(req, settings)
    async with runner.admitted():
        sentences, tally, tokens = await runner.call(plan_probe, model, pairs)
        if tokens > settings.probe_max_tokens:
            raise ApiError(422, "too_many_tokens", f"the sentences have {tokens} tokens together; the limit is "
                           f"{settings.probe_max_tokens} (probe_max_tokens in GET /api/probe/info)", count=tokens,
                           limit=settings.probe_max_tokens)
        for batch in batches(sentences, settings.corpus_batch_size, settings.max_batch_tokens):
            tally += await runner.call(tally_batch, model, batch, pairs_of(pairs, batch))
            if await request.is_disconnected():  # nobody to answer: stop spending the model on it
                raise ApiError(400, "client_disconnected", "the client went away before the probe finished")
    try:
        return json_response(summarize(tally, model.info))
    except NoUsablePairs as e:
        raise ApiError(422, "no_usable_pairs", str(e), skipped=e.skipped) from None

