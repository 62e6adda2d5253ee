"""POST /api/probe and GET /api/probe/info: heads as classifiers of a relation between words
(headscope/analyses/probes.py).

The model work goes through the runner as /api/corpus's does: one job to tokenize the distinct sentences, then
one job per batch, so other requests get their turn in between.
"""

import anyio
from fastapi import APIRouter, Request

from headscope.analyses.heads import padded_batches
from headscope.analyses.probes import (
    DEFINITIONS,
    FIELDS,
    FORMAT,
    NotProbeable,
    NoUsablePairs,
    PairsError,
    TooManyPairs,
    pairs_of,
    parse_pairs,
    plan_probe,
    probe_kinds,
    summarize,
    tally_batch,
)
from headscope.data import PROBE_EXAMPLES, PROBE_SETS
from headscope.server.deps import ModelsDep, RunnerDep, SettingsDep, address_of, pick_text_model
from headscope.server.encoding import json_response
from headscope.server.errors import ApiError, ErrorCode
from headscope.server.schemas.common import ERROR_RESPONSES
from headscope.server.schemas.probes import (
    PROBE_LIMITS,
    ProbeInfo,
    ProbeRequest,
    ProbeResponse,
)
from headscope.server.settings import Settings, public_limits

router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)


def examples() -> list[dict]:
    return [{"name": name, "description": description, "file": f"headscope/data/probe_sets/{name}.jsonl",
             "pairs": (PROBE_SETS / f"{name}.jsonl").read_text(encoding="utf-8")}
            for name, description in PROBE_EXAMPLES.items()]


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
        raise ApiError(ErrorCode.too_many_characters, f"pairs has {len(req.pairs)} characters; the limit is "
                       f"{settings.probe_max_chars} (probe_max_chars in GET /api/probe/info)", count=len(req.pairs),
                       limit=settings.probe_max_chars)
    try:  # on a worker thread: ~0.1 s for the largest text allowed, which the event loop need not wait out
        return await anyio.to_thread.run_sync(parse_pairs, req.pairs, settings.probe_max_pairs)
    except TooManyPairs as e:
        raise ApiError(ErrorCode.too_many_pairs, f"{e} (probe_max_pairs in GET /api/probe/info)", count=e.count,
                       limit=e.limit) from None
    except PairsError as e:
        raise ApiError(ErrorCode.invalid_pairs, str(e), lines=[{"line": line, "error": what} for line, what in e.problems]) from None


@router.post("/probe", response_model=ProbeResponse)
async def probe(req: ProbeRequest, request: Request, models: ModelsDep, runner: RunnerDep, settings: SettingsDep):
    """Each head as a classifier of a relation (Clark et al. 2019): for every (sentence, from, to) pair, does the
    word the from-word attends to most equal the to-word? Accuracy [layer][head] per kind, beside the best
    fixed-offset baseline."""
    model = pick_text_model(models, req.model, "probing (/api/probe) scores word relations in sentences")
    try:
        probe_kinds(model.info)
    except NotProbeable as e:
        raise ApiError(ErrorCode.not_probeable, str(e)) from None
    pairs = await read_pairs(req, settings)
    async with runner.long_job(address_of(request)):
        sentences, tally, tokens = await runner.step(plan_probe, model, pairs)
        if tokens > settings.probe_max_tokens:
            raise ApiError(ErrorCode.too_many_tokens, f"the sentences have {tokens} tokens together; the limit is "
                           f"{settings.probe_max_tokens} (probe_max_tokens in GET /api/probe/info)", count=tokens,
                           limit=settings.probe_max_tokens)
        for batch in padded_batches(sentences, settings.corpus_batch_size, settings.max_batch_tokens):
            tally += await runner.step(tally_batch, model, batch, pairs_of(pairs, batch))
            if await request.is_disconnected():  # nobody to answer: stop spending the model on it
                raise ApiError(ErrorCode.client_disconnected, "the client went away before the probe finished")
    try:
        return json_response(summarize(tally, model.info))
    except NoUsablePairs as e:
        raise ApiError(ErrorCode.no_usable_pairs, str(e), skipped=e.skipped) from None

