"""POST /api/patch: activation patching between a clean and a corrupted prompt (headscope/analyses/patching.py),
streamed like importance; POST /api/attribute: direct logit attribution (headscope/analyses/attribution.py).

Patching is a long job (headscope/server/runner.py): one model step per forward pass (the two recorded runs, then
one per batch of cells), each after any shorter work waiting, so other requests get the model in between; a client
address holds at most long_jobs_per_client of them, and a client that goes away stops the run at the next pass.
"""

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from headscope.analyses.attribution import attribute as direct_logit_attribution
from headscope.analyses.patching import CannotPatch, PatchSpec, patching_steps, top_predictions
from headscope.models.analysis import AttentionModel
from headscope.server.deps import ModelsDep, RunnerDep, SettingsDep, address_of, pick_text_model
from headscope.server.encoding import json_response
from headscope.server.errors import ApiError, ErrorCode
from headscope.server.runner import ModelRunner
from headscope.server.schemas.common import ERROR_RESPONSES
from headscope.server.schemas.patching import (
    PATCH_STREAM,
    AttributeRequest,
    AttributeResponse,
    PatchRequest,
    PatchResponse,
    PredictRequest,
    PredictResponse,
)
from headscope.server.streams import ndjson, prepend

router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)


@router.post("/patch", response_model=PatchResponse, responses=PATCH_STREAM)
async def patch(req: PatchRequest, request: Request, models: ModelsDep, runner: RunnerDep, settings: SettingsDep):
    """Activation patching: run one prompt with one activation (a head's output, the residual stream, an attention
    or MLP output) taken from the other prompt's run, for every such activation, and measure how much of the
    difference between the clean and the corrupted answer it carries (docs/patching.md)."""
    model = pick_text_model(models, req.model, "activation patching (/api/patch) compares two prompts")
    spec = PatchSpec(req.clean, req.corrupted, req.answer, req.wrong, req.metric, req.patch, req.direction, req.step)
    events = patch_events(runner, address_of(request), model, spec, settings.patch_max_work)
    try:  # the first step prepares and checks everything: what it refuses is a 422, not a line in a stream
        first = await anext(events)
    except CannotPatch as e:
        raise ApiError(e.code, str(e), **e.extra) from None
    if req.stream:
        lines = ndjson(prepend(first, events), refused=(ValueError,), failed=ErrorCode.patching_failed)
        return StreamingResponse(lines, media_type="application/x-ndjson")
    async for event in prepend(first, events):
        if "result" in event:
            return json_response(event["result"])
        if await request.is_disconnected():  # nobody to answer: stop spending the model on it
            await events.aclose()
            raise ApiError(ErrorCode.client_disconnected, "the client went away before patching finished")


async def patch_events(runner: ModelRunner, address: str | None, model: AttentionModel, spec: PatchSpec,
                       max_work: int):
    """Progress after every forward pass, then the result; each pass is its own model step, after shorter work."""
    steps = patching_steps(model, spec, max_work)  # no edit outlives a step: `editing` closes within each pass
    async with runner.long_job(address):
        while True:
            event = await runner.step(next, steps)  # the generator yields its result last: never exhausted
            yield event
            if "result" in event:
                return


@router.post("/attribute", response_model=AttributeResponse)
async def attribute(req: AttributeRequest, models: ModelsDep, runner: RunnerDep):
    """Direct logit attribution: each head's, each MLP's, the embeddings' and every bias's direct contribution to
    logit(answer) - logit(wrong), through the final norm with its scale frozen at this run; the parts add up to the
    model's own logit difference (docs/patching.md)."""
    model = pick_text_model(models, req.model, "direct logit attribution (/api/attribute) explains a token's logit")
    try:
        answer = await runner.run(direct_logit_attribution, model, req.text, req.answer, req.wrong, req.step)
    except CannotPatch as e:
        raise ApiError(e.code, str(e), **e.extra) from None
    return json_response(answer)


@router.post("/predict", response_model=PredictResponse)
async def predict(req: PredictRequest, models: ModelsDep, runner: RunnerDep, settings: SettingsDep):
    """A causal LM's top-k predictions of the token after the text, with each token's id, text and probability:
    what the Patching tab proposes as answer (top-1) and wrong (docs/patching.md)."""
    model = pick_text_model(models, req.model, "/api/predict predicts the token after a text")
    if req.k > settings.predict_max_k:
        raise ApiError(ErrorCode.validation_error, f"k is {req.k}; /api/predict returns at most "
                       f"{settings.predict_max_k} predictions", field="k", limit=settings.predict_max_k)
    try:
        answer = await runner.run(top_predictions, model, req.text, req.k)
    except CannotPatch as e:
        raise ApiError(e.code, str(e), **e.extra) from None
    return json_response(answer)
