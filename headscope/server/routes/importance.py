"""POST /api/importance: each head's importance and the pruning curve (headscope/analyses/importance.py), streamed.

One model job per evaluation of the measure (1 + 2N for N heads), so other requests get the model in
between, and a client that goes away stops the run at the next step (as /api/corpus).
"""

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from headscope.analyses.importance import CannotMeasure, check_texts, importance_steps
from headscope.models.analysis import AttentionModel
from headscope.models.interventions import AblationMode
from headscope.server.encoding import dumps, json_response
from headscope.server.errors import ApiError
from headscope.server.routes.api import ERRORS, ModelsDep, RunnerDep, SettingsDep, ndjson, pick_model
from headscope.server.runner import ModelRunner
from headscope.server.schemas import Request as StrictRequest
from headscope.server.schemas import Text

router = APIRouter(prefix="/api", responses=ERRORS)


class ImportanceRequest(StrictRequest):
    model: str | None = Field(None, description="A model name from GET /api/models; omitted: the server's default.")
    texts: list[Text] | None = Field(
        None, description="Texts to measure on, at most `importance_max_texts` with `importance_max_tokens` tokens "
        "together (GET /api/models limits), each within the model's max_tokens. Omitted: the model's own set "
        "(dates: 500 held-out generated dates; induction: 100 random strings written twice; any other: 48 varied "
        "sentences), and for dates and induction their own measure (see `measure` in the answer).",
    )
    ablation: Literal["zero", "mean"] = Field(
        "zero", description="How a head is knocked out: its output z = pattern @ V set to 0, or to its mean over "
        "the query positions of the text.",
    )
    stream: bool = Field(
        False, description="Answer with newline-delimited JSON progress lines, then the result (see 200)."
    )


class MeasureInfo(BaseModel):
    name: str = Field(description="exact_match, repeated_half_loss, embedding_cosine, next_token_loss or "
                      "output_logprob (docs/importance.md).")
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
    ablation: Literal["zero", "mean"]
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
        "description": "With `stream: true`: newline-delimited JSON, one `{\"done\": n, \"total\": N}` line per "
        "evaluation of the measure, then `{\"result\": ImportanceResponse}`, or `{\"error\": code, \"detail\": "
        "words}` if it fails.",
        "content": {"application/x-ndjson": {}},
    }
}


@router.post("/importance", response_model=ImportanceResponse, responses=IMPORTANCE_STREAM)
async def importance(req: ImportanceRequest, request: Request, models: ModelsDep, runner: RunnerDep,
                     settings: SettingsDep):
    """Each head's importance (the drop in a quality measure when it alone is ablated; Michel et al. 2019) and
    the pruning curve: the measure as heads are ablated together from least to most important."""
    model = pick_model(models, req.model)
    texts = None
    if req.texts is not None:
        if len(req.texts) > settings.importance_max_texts:  # before tokenizing any
            raise ApiError(422, "too_many_texts", f"{len(req.texts)} texts sent; importance takes at most "
                           f"{settings.importance_max_texts}", count=len(req.texts), limit=settings.importance_max_texts)
        try:
            texts = await runner.run(check_texts, model, req.texts, settings.importance_max_texts,
                                     settings.importance_max_tokens)
        except CannotMeasure as e:
            raise ApiError(422, e.code, str(e), **e.extra) from None
    events = importance_events(runner, model, req.ablation, texts)
    try:  # the first step prepares the measure: what it refuses is a 422, not a line in a stream
        first = await anext(events)
    except CannotMeasure as e:  # texts, or a model whose heads cannot be reached one by one
        raise ApiError(422, e.code, str(e), **e.extra) from None
    if req.stream:
        return StreamingResponse(stream_lines(prepend(first, events)), media_type="application/x-ndjson")
    async for event in prepend(first, events):
        if "result" in event:
            return json_response(event["result"])
        if await request.is_disconnected():  # nobody to answer: stop spending the model on it
            await events.aclose()
            raise ApiError(400, "client_disconnected", "the client went away before importance finished")


async def importance_events(runner: ModelRunner, model: AttentionModel, mode: AblationMode, texts: list[str] | None):
    """Progress after every evaluation, then the result; each step is its own model job."""
    steps = importance_steps(model, mode, texts)  # left to the garbage collector when cancelled: between steps
    async with runner.admitted():  # no head is ablated (headscope/analyses/importance.py yields outside `ablating`)
        while True:
            event = await runner.call(next, steps)  # the generator yields its result last: never exhausted
            yield event
            if "result" in event:
                return


async def stream_lines(events):
    """Newline-delimited JSON of the events; a failure after the first line becomes an error line."""
    try:
        async for line in ndjson(events):
            yield line
    except CannotMeasure as e:
        yield dumps({"error": e.code, "detail": str(e)}) + b"\n"
    except ValueError as e:  # anything else the model refuses once the answer has started: said, not a cut stream
        yield dumps({"error": "importance_failed", "detail": str(e)}) + b"\n"


async def prepend(first: dict, events):
    yield first
    async for event in events:
        yield event
