"""POST /api/attention, its GET twin, and POST /api/heads: one text's attention, metrics and ablation effect.

GET /api/attention takes the page's own URL parameters (`/?text=…&model=…` ↔ `/api/attention?text=…&model=…`,
Datasette-style), so that a shared link can point at its data: same answer, same limits. Parameters the page's
URL holds for its views only (tab, words, nospecial, fit, step, kind, layer, head, query, other tabs' settings)
do not change the data and are ignored.
"""

import time
from functools import partial

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from headscope.models.analysis import MAX_NEW_TOKENS
from headscope.models.interventions import AblationMode
from headscope.models.metric_choice import MetricName
from headscope.server.answers import (
    attention_body,
    check_weights_request,
    heads_fields,
    heads_key,
    new_tokens,
    remember_heads,
    requested_ablation,
)
from headscope.server.deps import ModelsDep, RecentHeadsDep, RunnerDep, SettingsDep, client_of, pick_model
from headscope.server.encoding import BINARY_MEDIA_TYPE, choose_encoding, encoded_response, json_response
from headscope.server.errors import ApiError, ErrorCode
from headscope.server.inputs import model_input
from headscope.server.runner import Pending
from headscope.server.schemas.attention import (
    BINARY_RESPONSE,
    AttentionRequest,
    AttentionResponse,
    Format,
    HeadsRequest,
    HeadsResponse,
    Weights,
)
from headscope.server.schemas.common import ERROR_RESPONSES

router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)


@router.post("/attention", response_model=AttentionResponse, responses=BINARY_RESPONSE)
async def attention(req: AttentionRequest, request: Request, models: ModelsDep, runner: RunnerDep,
                    settings: SettingsDep, recent: RecentHeadsDep):
    """Every layer's and head's attention pattern for one text, with per-head metrics and roles."""
    return await answer_attention(req, request, models, runner, settings, recent)


@router.get("/attention", response_model=AttentionResponse, responses=BINARY_RESPONSE)
async def attention_twin(
    request: Request, models: ModelsDep, runner: RunnerDep, settings: SettingsDep, recent: RecentHeadsDep,
    text: str | None = Query(None, description="The text, as the page's `text` (text models)."),
    image: str | None = Query(None, description="Image models: the picture, as POST's `image` (base64 PNG or JPEG)."),
    model: str | None = Query(None, description="A model name from GET /api/models; omitted: the default."),
    truncate: bool = Query(False, description="Cut a text that is too long (the page writes `truncate=1`)."),
    gen: int | None = Query(None, ge=0, le=MAX_NEW_TOKENS, description="Tokens to generate: `generate` for a "
                            "causal model, `max_new_tokens` for an encoder–decoder (the page's generation box)."),
    weights: Weights = Query("attention", description="As POST's `weights`."),
    rollout: bool = Query(False, description="As POST's `rollout` (the page writes `rollout=1`)."),
    ablate: str = Query("", description="Heads to knock out as the page writes them: KIND:LAYER:HEAD, "
                        "comma-separated, e.g. `encoder:2:5,encoder:3:0`."),
    ablation: AblationMode = Query("zero", description="As POST's `ablation`."),
    format: Format = Query("json", description="As POST's `format`."),
    metrics: bool = Query(True, description="As POST's `metrics`."),
    similarity: bool = Query(False, description="As POST's `similarity`."),
    pool_to: int | None = Query(None, description="As POST's `pool_to`."),
    ab_metric: MetricName | None = Query(None, description="As POST's `metric`: what the ablation's effect also "
                                         "scores (the page's URL names it ab_metric: its Patching tab has `metric`)."),
    ab_span: str | None = Query(None, description="As POST's `span`, written START,END (e.g. `17,33`)."),
    ab_answer: str | None = Query(None, description="As POST's `answer`."),
    ab_wrong: str | None = Query(None, description="As POST's `wrong`."),
):
    """The JSON twin of the page: `/?text=…&model=…` is the page, `/api/attention?text=…&model=…` its data, the
    same answer as POST /api/attention with the same fields. View-only parameters of the page are ignored."""
    chosen = pick_model(models, model)
    if text is None and image is None:  # as FastAPI says a missing parameter, naming what the model takes
        field = "image" if chosen.info.takes == "image" else "text"
        raise RequestValidationError([{"loc": ("query", field), "msg": f"Field required ({chosen.info.name} takes "
                                       f"{'an image' if field == 'image' else 'a text'})", "type": "missing"}])
    given = {"text": text} if text is not None else {}
    given.update({"image": image} if image is not None else {})
    fields = dict(**given, model=model, truncate=truncate, weights=weights, rollout=rollout, ablation=ablation,
                  format=format, metrics=metrics, similarity=similarity, pool_to=pool_to, ablate=parse_heads(ablate))
    fields.update({name: value for name, value in (("metric", ab_metric), ("span", parse_span(ab_span)),
                                                   ("answer", ab_answer), ("wrong", ab_wrong)) if value is not None})
    if gen is not None:
        fields["generate" if chosen.info.generation == "continuation" else "max_new_tokens"] = gen
    try:
        req = AttentionRequest(**fields)
    except ValidationError as e:  # said as a 422 of the query parameters, as FastAPI says its own
        raise RequestValidationError([{**err, "loc": ("query", *err["loc"])} for err in e.errors()]) from None
    return await answer_attention(req, request, models, runner, settings, recent)


def parse_heads(text: str) -> list[dict]:
    """`kind:layer:head,…` (the page's URL) as a request's `ablate`; 422 naming the form otherwise."""
    heads = []
    for part in filter(None, text.split(",")):
        kind, *numbers = part.split(":")
        if len(numbers) != 2 or not kind or not all(n.isdigit() for n in numbers):
            raise ApiError(ErrorCode.bad_ablation, f"ablate: {part!r} is not KIND:LAYER:HEAD, e.g. encoder:2:5",
                           field="ablate")
        heads.append({"kind": kind, "layer": int(numbers[0]), "head": int(numbers[1])})
    return heads


def parse_span(text: str | None) -> list[int] | None:
    """`start,end` (the page's URL) as a request's `span`; 422 naming the form otherwise."""
    if text is None:
        return None
    start, comma, end = text.partition(",")
    if not comma or not start.isdigit() or not end.isdigit():
        raise RequestValidationError([{"loc": ("query", "ab_span"), "type": "value_error", "input": text,
                                       "msg": f"ab_span must be START,END (two whole numbers, e.g. 17,33), not {text!r}"}])
    return [int(start), int(end)]


async def answer_attention(req: AttentionRequest, request: Request, models, runner, settings, recent):
    started = time.perf_counter()
    model = pick_model(models, req.model)
    generate = new_tokens(model, req)
    if req.head is not None and req.head.kind not in model.info.kinds:
        raise ApiError(ErrorCode.unknown_kind, f"{model.info.name} has no attention kind {req.head.kind!r}; its kinds "
                       f"are {', '.join(model.info.kinds)}")
    check_weights_request(model, req.weights)
    ablation = requested_ablation(model, req)
    given = await model_input(model, req, runner, settings)  # no tokenizing yet: the runner does it in line
    text, cut = given.value, given.cut
    encoding = choose_encoding(request.headers.get("accept-encoding", ""))
    key = (model.info.name, given.key, cut, req.truncate, generate, req.format, req.similarity, req.metrics, req.pool_to,
           None if req.head is None else tuple(req.head.model_dump().values()), ablation, encoding, req.weights,
           req.rollout)
    build = partial(attention_body, req=req, cut=cut, encoding=encoding, max_json_floats=settings.max_json_floats,
                    model=model, text=text, generate=generate, ablation=ablation)
    later = None
    if not req.metrics:  # computed once the answer is sent, for POST /api/heads
        later = partial(remember_heads, recent, heads_key(model, given.key, cut, req.truncate, generate, ablation),
                        cut=cut)
    body = await runner.analyze(key, Pending(model, text, req.truncate, generate, build, client_of(request), later,
                                             ablation=ablation))
    response = encoded_response(body, encoding, "application/json" if req.format == "json" else BINARY_MEDIA_TYPE)
    response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"  # waiting included
    return response


@router.post("/heads", response_model=HeadsResponse)
async def heads(req: HeadsRequest, request: Request, models: ModelsDep, runner: RunnerDep, settings: SettingsDep,
                recent: RecentHeadsDep):
    """Every head's metrics and roles for a text: the `heads` of /api/attention. Shortly after /api/attention
    with `metrics: false` for the same text and options, they are computed from that answer's forward pass;
    otherwise the model runs."""
    model = pick_model(models, req.model)
    generate = new_tokens(model, req)
    ablation = requested_ablation(model, req)
    given = await model_input(model, req, runner, settings)
    text, cut = given.value, given.cut
    key = heads_key(model, given.key, cut, req.truncate, generate, ablation)
    # looked up as a model job: after any batch still computing it (see headscope/server/recent_heads.py)
    answer = await runner.run(recent.get, key)
    if answer is None:
        answer = await runner.analyze(("heads", *key), Pending(model, text, req.truncate, generate,
                                                                partial(heads_fields, cut=cut), client_of(request),
                                                                ablation=ablation))
    return json_response(answer)
