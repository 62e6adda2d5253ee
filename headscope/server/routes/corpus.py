"""POST /api/corpus: per-head metrics averaged over many sentences, run in batches, streamed if asked."""

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from headscope.analyses.heads import Sums, corpus_sums, plan_corpus
from headscope.models.analysis import AttentionModel
from headscope.server.deps import ModelsDep, RunnerDep, SettingsDep, address_of, pick_text_model
from headscope.server.encoding import json_response
from headscope.server.errors import ApiError, ErrorCode
from headscope.server.runner import ModelRunner
from headscope.server.schemas.common import ERROR_RESPONSES
from headscope.server.schemas.corpus import CORPUS_STREAM, CorpusRequest, CorpusResponse
from headscope.server.streams import ndjson

router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)


@router.post("/corpus", response_model=CorpusResponse, responses=CORPUS_STREAM)
async def corpus(req: CorpusRequest, request: Request, models: ModelsDep, runner: RunnerDep, settings: SettingsDep):
    """Per-head metrics averaged over many sentences, run in batches; bad entries are reported, not fatal."""
    model = pick_text_model(models, req.model, "/api/corpus averages heads over sentences")
    if len(req.texts) > settings.corpus_max_texts:
        raise ApiError(ErrorCode.too_many_texts, f"{len(req.texts)} texts sent; the limit is "
                       f"{settings.corpus_max_texts} per request", count=len(req.texts), limit=settings.corpus_max_texts)
    batches, errors, tokens = await runner.run(plan_corpus, model, req.texts, req.truncate, settings.corpus_batch_size,
                                               settings.max_batch_tokens)
    if tokens > settings.corpus_max_tokens:
        raise ApiError(ErrorCode.too_many_tokens, f"the texts have {tokens} tokens together; the limit is "
                       f"{settings.corpus_max_tokens} per request", count=tokens, limit=settings.corpus_max_tokens)
    events = corpus_events(runner, address_of(request), model, batches, errors, req.truncate)
    await anext(events)  # its place: a long job of this client's (429 if it holds all it may)
    if req.stream:
        return StreamingResponse(ndjson(events), media_type="application/x-ndjson")
    async for event in events:
        if "result" in event:
            return json_response(event["result"])
        if await request.is_disconnected():  # nobody to answer: stop spending the model on it
            await events.aclose()
            raise ApiError(ErrorCode.client_disconnected, "the client went away before the corpus finished")


async def corpus_events(runner: ModelRunner, address: str | None, model: AttentionModel, batches, errors, truncate):
    """None once it holds its long job, then progress after every batch, then the result. One model step per
    batch (at most max_batch_tokens padded tokens), so other requests get their turn in between."""
    total = sum(map(len, batches))
    sums = Sums()
    async with runner.long_job(address):
        yield None
        for batch in batches:
            sums += await runner.step(corpus_sums, model, batch, truncate)
            yield {"done": sums.sentences, "total": total}
        summary = await runner.step(sums.summary)
        similarity = await runner.step(sums.similarity)
    yield {"result": {"model": model.info.name, "sentences": sums.sentences, "errors": errors, "heads": summary,
                      "roles_of": "corpus means", "similarity": similarity}}

