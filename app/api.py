"""The JSON API: /api/models, /api/attention, /api/corpus. Routes validate, call model/, return."""

import time
from dataclasses import asdict
from functools import partial
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from app.encoding import (
    COMPACT_MEDIA_TYPE,
    choose_encoding,
    compact_body,
    compress,
    dumps,
    encoded_response,
    json_response,
)
from app.errors import ApiError
from app.runner import Busy, ModelRunner, Pending
from app.schemas import (
    AttentionRequest,
    AttentionResponse,
    CorpusRequest,
    CorpusResponse,
    ErrorResponse,
    ModelsResponse,
)
from app.settings import Settings
from model.analysis import DIMS, MAX_NEW_TOKENS, Analysis, AttentionModel, TooManyTokens
from model.heads import Sums, corpus_sums, head_similarity, plan_corpus, summarize_heads


def get_models(request: Request) -> dict[str, AttentionModel]:
    return request.app.state.models


def get_runner(request: Request) -> ModelRunner:
    return request.app.state.runner


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


ModelsDep = Annotated[dict[str, AttentionModel], Depends(get_models)]
RunnerDep = Annotated[ModelRunner, Depends(get_runner)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

ERRORS = {
    code: {"model": ErrorResponse, "description": description}
    for code, description in {
        400: "Malformed JSON",
        408: "The body arrived too slowly",
        413: "Body larger than the server's limit",
        415: "Body is not JSON",
        422: "Invalid field, unknown model, or too many tokens",
        503: "Too many requests waiting; retry after the Retry-After header",
    }.items()
}

router = APIRouter(prefix="/api", responses=ERRORS)


def pick_model(models: dict[str, AttentionModel], name: str | None) -> AttentionModel:
    """The named model, or the default (the first served) when no name is given."""
    if name is None:
        return next(iter(models.values()))
    if name not in models:
        raise ApiError(422, "unknown_model", f"unknown model {name!r}; available: {', '.join(models)}",
                       available=list(models))
    return models[name]


@router.get("/models", response_model=ModelsResponse)
def list_models(models: ModelsDep, settings: SettingsDep):
    """Every model this server runs, with its size, its attention kinds and their layouts, and the limits
    of a request; the first model is the default."""
    return json_response({
        "default": next(iter(models)),
        "models": [asdict(m.info) for m in models.values()],
        "limits": {
            "max_body_bytes": settings.max_body_bytes,
            "corpus_max_texts": settings.corpus_max_texts,
            "corpus_max_tokens": settings.corpus_max_tokens,
            "max_new_tokens": MAX_NEW_TOKENS,
        },
    })


def new_tokens(model: AttentionModel, req: AttentionRequest) -> int | None:
    """How many tokens the request asks `model` to generate (None: the model's default); 422 for a
    generation field the model has no use for."""
    generation = model.info.generation
    if req.max_new_tokens is not None and generation != "output":
        raise ApiError(422, "not_generating", f"{model.info.name} does not write an output: max_new_tokens is for "
                       "encoder-decoder models (see `generation` in GET /api/models)")
    if req.generate and generation != "continuation":
        raise ApiError(422, "not_generating", f"{model.info.name} does not continue text: generate is for causal "
                       "(decoder-only) models (see `generation` in GET /api/models)")
    if req.max_new_tokens is not None and req.max_new_tokens > model.info.max_new_tokens:
        raise ApiError(422, "too_many_new_tokens", f"{model.info.name} generates at most "
                       f"{model.info.max_new_tokens} tokens; max_new_tokens is {req.max_new_tokens}",
                       limit=model.info.max_new_tokens)
    if generation == "continuation":
        return req.generate
    return req.max_new_tokens


def attention_fields(analysis: Analysis, req: AttentionRequest) -> dict:
    """Everything /api/attention returns for one analysis, but the attention arrays."""
    return {
        "model": analysis.model,
        "tokens": analysis.tokens,
        "offsets": analysis.offsets,
        "special": analysis.special,
        "words": analysis.words,
        "generated": analysis.generated,
        "truncated": analysis.truncated,
        "dims": list(DIMS),
        "layout": {kind: asdict(layout) for kind, layout in analysis.layout.items()},
        "format": req.format,
        "attention": None,  # filled in by the chosen encoding
        "heads": summarize_heads(analysis),
        "similarity": head_similarity(analysis) if req.similarity else None,
        "output_text": analysis.output_text,
        "output_tokens": analysis.output_tokens,
        "output_special": analysis.output_special,
        "output_words": analysis.output_words,
        "stopped": analysis.stopped,
    }


def attention_body(analysis: Analysis, req: AttentionRequest, encoding: str | None) -> bytes:
    """The answer's bytes, compressed for the client; runs on the model's worker thread."""
    fields = attention_fields(analysis, req)
    if req.format == "compact":
        return compress(compact_body(analysis.patterns, fields), encoding)
    attention = {kind: pattern.numpy() for kind, pattern in analysis.patterns.items()}
    return compress(dumps({**fields, "attention": attention}), encoding)


COMPACT_RESPONSE = {
    200: {
        "description": "`format: json`: the JSON below. `format: compact`: one binary body, "
        "`[header length n: uint32 little-endian][header: n bytes of UTF-8 JSON][attention bytes]`; the header "
        "is the JSON answer with each attention kind given as a CompactAttention (where its bytes are).",
        "content": {COMPACT_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.post("/attention", response_model=AttentionResponse, responses=COMPACT_RESPONSE)
async def attention(req: AttentionRequest, request: Request, models: ModelsDep, runner: RunnerDep):
    """Every layer's and head's attention pattern for one text, with per-head metrics and roles."""
    started = time.perf_counter()
    model = pick_model(models, req.model)
    generate = new_tokens(model, req)
    count = await anyio.to_thread.run_sync(model.count_tokens, req.text)  # long texts: off the event loop
    limit = model.info.max_tokens
    if count > limit and not req.truncate:
        raise TooManyTokens(count, limit, model.info.name)
    encoding = choose_encoding(request.headers.get("accept-encoding", ""))
    key = (model.info.name, req.text, req.truncate, generate, req.format, req.similarity, encoding)
    build = partial(attention_body, req=req, encoding=encoding)
    body = await runner.analyze(key, Pending(model, req.text, req.truncate, generate, min(count, limit), build))
    response = encoded_response(body, encoding, COMPACT_MEDIA_TYPE if req.format == "compact" else "application/json")
    response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"  # waiting included
    return response


CORPUS_STREAM = {
    200: {
        "description": "With `stream: true`: newline-delimited JSON, one `{\"done\": n, \"total\": N}` line per "
        "batch, then `{\"result\": CorpusResponse}`, or `{\"error\": code, \"detail\": words}` if it fails.",
        "content": {"application/x-ndjson": {}},
    }
}


@router.post("/corpus", response_model=CorpusResponse, responses=CORPUS_STREAM)
async def corpus(req: CorpusRequest, request: Request, models: ModelsDep, runner: RunnerDep, settings: SettingsDep):
    """Per-head metrics averaged over many sentences, run in batches; bad entries are reported, not fatal."""
    model = pick_model(models, req.model)
    if len(req.texts) > settings.corpus_max_texts:
        raise ApiError(422, "too_many_texts", f"{len(req.texts)} texts sent; the limit is "
                       f"{settings.corpus_max_texts} per request", count=len(req.texts), limit=settings.corpus_max_texts)
    batches, errors, tokens = await runner.run(plan_corpus, model, req.texts, req.truncate, settings.corpus_batch_size)
    if tokens > settings.corpus_max_tokens:
        raise ApiError(422, "too_many_tokens", f"the texts have {tokens} tokens together; the limit is "
                       f"{settings.corpus_max_tokens} per request", count=tokens, limit=settings.corpus_max_tokens)
    events = corpus_events(runner, model, batches, errors, req.truncate)
    if req.stream:
        return StreamingResponse(ndjson(events), media_type="application/x-ndjson")
    async for event in events:
        if "result" in event:
            return json_response(event["result"])
        if await request.is_disconnected():  # nobody to answer: stop spending the model on it
            await events.aclose()
            raise ApiError(400, "client_disconnected", "the client went away before the corpus finished")


async def corpus_events(runner: ModelRunner, model: AttentionModel, batches, errors, truncate):
    """Progress after every batch, then the result. One model job per batch, so other requests
    get their turn in between."""
    total = sum(map(len, batches))
    sums = Sums()
    async with runner.admitted():
        for batch in batches:
            sums += await runner.call(corpus_sums, model, batch, truncate)
            yield {"done": sums.sentences, "total": total}
    summary = await runner.call(sums.summary)
    yield {"result": {"model": model.info.name, "sentences": sums.sentences, "errors": errors, "heads": summary}}


async def ndjson(events):
    try:
        async for event in events:
            yield dumps(event) + b"\n"
    except Busy as e:
        yield dumps({"error": "busy", "detail": str(e)}) + b"\n"
