"""POST /api/importance: each head's importance and the pruning curve (headscope/analyses/importance.py), streamed.

One model job per evaluation of the measure (1 + 2N for N heads), so other requests get the model in
between, and a client that goes away stops the run at the next step (as /api/corpus).
"""

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from headscope.analyses.importance import CannotMeasure, check_texts, importance_steps
from headscope.models.analysis import AttentionModel
from headscope.models.interventions import AblationMode
from headscope.models.metric_choice import BadMetric, MetricChoice, choose_metric
from headscope.server.deps import ModelsDep, RunnerDep, SettingsDep, address_of, pick_text_model
from headscope.server.encoding import json_response
from headscope.server.errors import ApiError, ErrorCode
from headscope.server.runner import ModelRunner
from headscope.server.schemas.common import ERROR_RESPONSES
from headscope.server.schemas.importance import IMPORTANCE_STREAM, ImportanceRequest, ImportanceResponse
from headscope.server.streams import ndjson, prepend

router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)


@router.post("/importance", response_model=ImportanceResponse, responses=IMPORTANCE_STREAM)
async def importance(req: ImportanceRequest, request: Request, models: ModelsDep, runner: RunnerDep,
                     settings: SettingsDep):
    """Each head's importance (the drop in a quality measure when it alone is ablated; Michel et al. 2019) and
    the pruning curve: the measure as heads are ablated together from least to most important."""
    model = pick_text_model(models, req.model, "/api/importance measures heads on texts")
    metric = choose_metric(model, req.metric, req.span, req.answer, req.wrong)  # BadMetric: a 422 naming why
    texts = None
    if req.texts is not None:
        if len(req.texts) > settings.importance_max_texts:  # before tokenizing any
            raise ApiError(ErrorCode.too_many_texts, f"{len(req.texts)} texts sent; importance takes at most "
                           f"{settings.importance_max_texts}", count=len(req.texts), limit=settings.importance_max_texts)
        try:
            texts = await runner.run(check_texts, model, req.texts, settings.importance_max_texts,
                                     settings.importance_max_tokens)
        except CannotMeasure as e:
            raise ApiError(e.code, str(e), **e.extra) from None
    events = importance_events(runner, address_of(request), model, req.ablation, texts, metric)
    try:  # the first step prepares the measure: what it refuses is a 422, not a line in a stream
        first = await anext(events)
    except BadMetric as e:  # a span a text cannot hold
        raise ApiError(e.code, str(e), **e.extra) from None
    except CannotMeasure as e:  # texts, or a model whose heads cannot be reached one by one
        raise ApiError(e.code, str(e), **e.extra) from None
    if req.stream:
        # what the model refuses once the answer has started is said in a last line, not a cut stream
        lines = ndjson(prepend(first, events), refused=(ValueError,), failed=ErrorCode.importance_failed)
        return StreamingResponse(lines, media_type="application/x-ndjson")
    async for event in prepend(first, events):
        if "result" in event:
            return json_response(event["result"])
        if await request.is_disconnected():  # nobody to answer: stop spending the model on it
            await events.aclose()
            raise ApiError(ErrorCode.client_disconnected, "the client went away before importance finished")


async def importance_events(runner: ModelRunner, address: str | None, model: AttentionModel, mode: AblationMode,
                            texts: list[str] | None, metric: MetricChoice | None = None):
    """Progress after every evaluation, then the result; each step is its own model step, after shorter work."""
    steps = importance_steps(model, mode, texts, metric=metric)  # left to the garbage collector when cancelled: between steps
    async with runner.long_job(address):  # no head is ablated (headscope/analyses/importance.py yields outside `ablating`)
        while True:
            event = await runner.step(next, steps)  # the generator yields its result last: never exhausted
            yield event
            if "result" in event:
                return

