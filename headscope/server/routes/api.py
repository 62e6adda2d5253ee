"""The JSON API: /api/models, /api/attention, /api/heads, /api/corpus, /api/explain, /api/mha. Routes
validate, call model/, return."""

import math
import time
from dataclasses import asdict
from functools import partial
from typing import Annotated

import torch
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from headscope.analyses.heads import Sums, corpus_sums, head_similarity, plan_corpus, summarize_heads
from headscope.analyses.mechanism import explain as explain_head
from headscope.analyses.metrics import METRICS_ABOUT
from headscope.analyses.playground import LIMITS as MHA_LIMITS
from headscope.analyses.playground import PRESETS as MHA_PRESETS
from headscope.analyses.playground import MHAConfig
from headscope.analyses.playground import run as run_mha
from headscope.models.analysis import DIMS, Analysis, AttentionModel, cut_to_chars
from headscope.models.interventions import Ablation, BadAblation, check_ablation
from headscope.server.encoding import (
    BINARY_MEDIA_TYPE,
    choose_encoding,
    compress,
    dumps,
    encoded_response,
    json_response,
    max_pool,
    safetensors_body,
)
from headscope.server.errors import ApiError
from headscope.server.recent_heads import RecentHeads
from headscope.server.runner import Busy, ModelRunner, Pending
from headscope.server.schemas import (
    AblationRequest,
    AttentionRequest,
    AttentionResponse,
    CorpusRequest,
    CorpusResponse,
    ErrorResponse,
    ExplainRequest,
    ExplainResponse,
    HeadsRequest,
    HeadsResponse,
    MHAPresetsResponse,
    MHARequest,
    MHAResponse,
    ModelsResponse,
    TextRequest,
)
from headscope.server.settings import Settings, public_limits
from headscope.server.weights import check_weights_request, chosen_weights, rollout_fields, weights_about


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
        421: "The Host header is not one this server answers to (DNS rebinding defence)",
        422: "Invalid field, unknown model, too many characters or tokens, or a json answer too large",
        431: "Request line and headers larger than the server's limit",
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
        "limits": public_limits(settings),
        "metrics": METRICS_ABOUT,
    })


def new_tokens(model: AttentionModel, req: TextRequest) -> int | None:
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


def selected_patterns(analysis: Analysis, req: AttentionRequest, arrays: dict | None = None) -> dict:
    """kind -> (L, H, Tq, Tk) patterns to send: every kind, or the one head the request names, pooled
    as it asks. `arrays`: what to send instead of the patterns, of the same shapes (value norms)."""
    patterns = analysis.patterns if arrays is None else arrays
    if req.head is not None:
        kind, layer, head = req.head.kind, req.head.layer, req.head.head
        L, H = patterns[kind].shape[:2]
        if layer >= L or head >= H:
            raise ApiError(422, "no_such_head", f"{kind} has layers 0..{L - 1} and heads 0..{H - 1}; "
                           f"asked for layer {layer}, head {head}")
        patterns = {kind: patterns[kind][layer : layer + 1, head : head + 1]}  # (1, 1, Tq, Tk)
    return {kind: max_pool(pattern, req.pool_to) for kind, pattern in patterns.items()}


def attention_fields(analysis: Analysis, fmt: str, pool: dict, selection: dict | None = None,
                     similarity: bool = False, cut: bool = False, metrics: bool = True) -> dict:
    """Everything /api/attention returns for one analysis, but the attention arrays. `cut`: the text was
    cut to the model's max_chars before it was tokenized; `metrics`: whether `heads` is filled in."""
    return {
        "model": analysis.model,
        "tokens": analysis.tokens,
        "offsets": analysis.offsets,
        "special": analysis.special,
        "words": analysis.words,
        "generated": analysis.generated,
        "truncated": analysis.truncated or cut,
        "dims": list(DIMS),
        "layout": {kind: asdict(layout) for kind, layout in analysis.layout.items()},
        "format": fmt,
        "pool": pool,
        "selection": selection,
        "attention": None,  # filled in by the chosen encoding
        "heads": summarize_heads(analysis) if metrics else None,
        "roles_of": "one text",
        "similarity": head_similarity(analysis) if similarity else None,
        "output_text": analysis.output_text,
        "output_tokens": analysis.output_tokens,
        "output_special": analysis.output_special,
        "output_words": analysis.output_words,
        "stopped": analysis.stopped,
        "output_probs": analysis.output_probs,
        "output_check": analysis.output_check,
    }


def attention_body(analysis: Analysis, req: AttentionRequest, cut: bool, encoding: str | None,
                   max_json_floats: int, model: AttentionModel | None = None, text: str = "",
                   generate: int | None = None, ablation: Ablation | None = None) -> bytes:
    """The answer's bytes, compressed for the client; runs on the model's worker thread."""
    arrays = chosen_weights(analysis, req.weights, model, text, req.truncate, generate, ablation)
    selected = selected_patterns(analysis, req, arrays)
    patterns = {kind: pattern for kind, (pattern, _) in selected.items()}
    rollout, rollout_about = rollout_fields(analysis, req.rollout, req.pool_to)
    floats = sum(pattern.numel() for pattern in [*patterns.values(), *(rollout or {}).values()])  # L*H*Tq*Tk per kind
    if req.format == "json" and floats > max_json_floats:  # ~13 bytes of JSON each: refuse before building
        raise ApiError(422, "answer_too_large", f"the answer has {floats} attention weights; format: json sends at "
                       f"most {max_json_floats} (max_json_floats in GET /api/models limits). Send format: "
                       "safetensors (exact float32) or compact (8-bit), or a shorter text", count=floats,
                       limit=max_json_floats)
    pool = {kind: block for kind, (_, block) in selected.items()}
    fields = attention_fields(analysis, req.format, pool, req.head.model_dump() if req.head else None,
                              req.similarity, cut, req.metrics)
    fields.update(weights=weights_about(req.weights, patterns), rollout_about=rollout_about)
    fields.update(ablation_fields(analysis, req))
    if req.format in ("compact", "safetensors"):
        return compress(safetensors_body(patterns, fields, exact=req.format == "safetensors", rollout=rollout), encoding)
    attention = {kind: pattern.numpy() for kind, pattern in patterns.items()}
    json_rollout = None if rollout is None else {kind: r.numpy() for kind, r in rollout.items()}
    return compress(dumps({**fields, "attention": attention, "rollout": json_rollout}), encoding)


def requested_ablation(model: AttentionModel, req: AblationRequest) -> Ablation | None:
    """The heads the request knocks out, checked against the model: 422 naming the problem; None for none.
    The limit on `ablate` is the model's own number of heads (every kind's layers x heads): more must repeat one."""
    if not req.ablate:
        return None
    try:
        modules = model.attention_modules()
    except NotImplementedError as e:
        raise ApiError(422, "not_ablatable", f"{e}; ablate is not available for {model.info.name}") from None
    limit = len(modules) * model.info.heads
    if len(req.ablate) > limit:
        raise ApiError(422, "too_many_heads", f"ablate lists {len(req.ablate)} heads but {model.info.name} has "
                       f"{limit} (every kind's layers x {model.info.heads} heads)", count=len(req.ablate), limit=limit)
    heads = [(h.kind, h.layer, h.head) for h in req.ablate]
    seen: set = set()
    twice = next((h for h in heads if h in seen or seen.add(h)), None)  # one pass: the list may be long
    if twice is not None:
        raise ApiError(422, "bad_ablation", f"ablate names {twice[0]} layer {twice[1]} head {twice[2]} twice")
    ablation = Ablation(tuple(heads), req.ablation)
    try:
        check_ablation(ablation, modules, model.info.heads)
    except BadAblation as e:
        raise ApiError(422, "bad_ablation", str(e)) from None
    return ablation


def ablation_fields(analysis: Analysis, req: AttentionRequest) -> dict:
    """The answer's ablate, ablation and effect (headscope/models/effect.py): what was knocked out and what it changed."""
    return {
        "ablate": [h.model_dump() for h in req.ablate],
        "ablation": req.ablation if req.ablate else None,
        "effect": analysis.effect,
    }


BINARY_RESPONSE = {
    200: {
        "description": "`format: json`: the JSON below. `format: safetensors` or `compact`: a safetensors file "
        "(8-byte little-endian header length n, n bytes of JSON header, the tensors' bytes). Its `__metadata__` "
        "holds every field below, each as a JSON-encoded string, with `attention` mapping each kind to a "
        "BinaryAttention that names its tensor. `headscope.server.encoding.read_safetensors` decodes it in Python; any "
        "safetensors reader reads the tensors.",
        "content": {BINARY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.post("/attention", response_model=AttentionResponse, responses=BINARY_RESPONSE)
async def attention(req: AttentionRequest, request: Request, models: ModelsDep, runner: RunnerDep,
                    settings: SettingsDep):
    """Every layer's and head's attention pattern for one text, with per-head metrics and roles."""
    started = time.perf_counter()
    model = pick_model(models, req.model)
    generate = new_tokens(model, req)
    if req.head is not None and req.head.kind not in model.info.kinds:
        raise ApiError(422, "unknown_kind", f"{model.info.name} has no attention kind {req.head.kind!r}; its kinds "
                       f"are {', '.join(model.info.kinds)}")
    check_weights_request(model, req.weights)
    ablation = requested_ablation(model, req)
    text, cut = cut_to_chars(model.info, req.text, req.truncate)  # no tokenizing yet: the runner does it in line
    encoding = choose_encoding(request.headers.get("accept-encoding", ""))
    key = (model.info.name, text, cut, req.truncate, generate, req.format, req.similarity, req.metrics, req.pool_to,
           None if req.head is None else tuple(req.head.model_dump().values()), ablation, encoding, req.weights,
           req.rollout)
    build = partial(attention_body, req=req, cut=cut, encoding=encoding, max_json_floats=settings.max_json_floats,
                    model=model, text=text, generate=generate, ablation=ablation)
    client = (request.client.host, request.client.port) if request.client else None  # its connection
    later = None
    if not req.metrics:  # computed once the answer is sent, for POST /api/heads
        later = partial(remember_heads, get_recent_heads(request),
                        heads_key(model, text, cut, req.truncate, generate, ablation), cut=cut)
    body = await runner.analyze(key, Pending(model, text, req.truncate, generate, build, client, later,
                                             ablation=ablation))
    response = encoded_response(body, encoding, "application/json" if req.format == "json" else BINARY_MEDIA_TYPE)
    response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"  # waiting included
    return response


# ---- /api/heads: the metrics of an answer sent without them ------------------------------------------


def get_recent_heads(request: Request) -> RecentHeads:
    return request.app.state.recent_heads


def heads_key(model: AttentionModel, text: str, cut: bool, truncate: bool, generate: int | None,
              ablation: Ablation | None) -> tuple:
    """What determines a text's per-head metrics: the same for /api/attention and /api/heads."""
    return (model.info.name, text, cut, truncate, generate, ablation)


def heads_fields(analysis: Analysis, cut: bool) -> dict:
    """The /api/heads answer for one analysis."""
    return {"model": analysis.model, "tokens": analysis.tokens, "truncated": analysis.truncated or cut,
            "heads": summarize_heads(analysis)}


def remember_heads(recent: RecentHeads, key: tuple, analysis: Analysis, cut: bool) -> None:
    """Keep an analysis for its /api/heads answer; on the model's thread, after its weights were sent."""
    recent.keep(key, partial(heads_fields, analysis, cut))


@router.post("/heads", response_model=HeadsResponse)
async def heads(req: HeadsRequest, request: Request, models: ModelsDep, runner: RunnerDep):
    """Every head's metrics and roles for a text: the `heads` of /api/attention. Shortly after /api/attention
    with `metrics: false` for the same text and options, they are computed from that answer's forward pass;
    otherwise the model runs."""
    model = pick_model(models, req.model)
    generate = new_tokens(model, req)
    ablation = requested_ablation(model, req)
    text, cut = cut_to_chars(model.info, req.text, req.truncate)
    key = heads_key(model, text, cut, req.truncate, generate, ablation)
    # looked up as a model job: after any batch still computing it (see headscope/server/recent_heads.py)
    answer = await runner.run(get_recent_heads(request).get, key)
    if answer is None:
        client = (request.client.host, request.client.port) if request.client else None
        answer = await runner.analyze(("heads", *key), Pending(model, text, req.truncate, generate,
                                                                partial(heads_fields, cut=cut), client,
                                                                ablation=ablation))
    return json_response(answer)


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
    similarity = await runner.call(sums.similarity)
    yield {"result": {"model": model.info.name, "sentences": sums.sentences, "errors": errors, "heads": summary,
                      "roles_of": "corpus means", "similarity": similarity}}


async def ndjson(events):
    try:
        async for event in events:
            yield dumps(event) + b"\n"
    except Busy as e:
        yield dumps({"error": "busy", "detail": str(e)}) + b"\n"


@router.post("/explain", response_model=ExplainResponse)
async def explain(req: ExplainRequest, models: ModelsDep, runner: RunnerDep):
    """Every step of one head for one query token, recomputed on the real model: the layer's input x, q_i, every
    k_j and v_j, the scores (masked: null), the weights, z_i, all heads' z_i concatenated, the output after W_O,
    and q_i ⊙ k_j. `shapes` says where each array comes from, `notes` what the family adds (rotary embeddings,
    grouped-query heads, T5's position bias). Headscope's own models, and transformers checkpoints whose attention
    runs through headscope/models/hf/attention.py (BERT, RoBERTa, DistilBERT, GPT-2, Llama, BART, T5); others get 422."""
    model = pick_model(models, req.model)
    generate = new_tokens(model, req)
    steps = await runner.run(explain_head, model, req.text, req.kind, req.layer, req.head, req.query,
                             req.truncate, generate)
    return json_response(explanation_json(steps))


def explanation_json(steps: dict) -> dict:
    """Tensors as arrays, -infinity scores as null, the layout as a dict."""
    out = {name: value.contiguous().numpy() if isinstance(value, torch.Tensor) else value for name, value in steps.items()}
    out["scores"] = [None if math.isinf(s) else s for s in steps["scores"].tolist()]
    out["layout"] = asdict(steps["layout"])
    return out


@router.get("/one-head-or-many", responses={200: {"content": {"application/json": {}}}})
def one_head_or_many():
    """The measured answer to "one head or many?": the dates model's architecture trained with 1, 2, 4 and 8
    heads at the same width, recipe and seed (headscope/training/one_head_or_many.py): held-out exact match, train and
    held-out gap, loss and accuracy curves, gradient-norm spread, local and long-range heads, and the
    attention of the 1-head and the best multi-head model on one example."""
    from fastapi.responses import FileResponse

    from headscope.training.one_head_or_many import DEFAULT_OUT

    return FileResponse(DEFAULT_OUT, media_type="application/json")


@router.get("/mha/presets", response_model=MHAPresetsResponse)
def mha_presets():
    """Ready configurations for POST /api/mha (PyTorch docs' three classic shapes) and the limits of a request."""
    return json_response({
        "presets": [asdict(p) for p in MHA_PRESETS],
        "limits": asdict(MHA_LIMITS),
    })


@router.post("/mha", response_model=MHAResponse)
async def mha(req: MHARequest, runner: RunnerDep):
    """Run torch.nn.MultiheadAttention on seeded random inputs and weights; return the code, the shapes torch
    reports, the weights, and the largest difference to Headscope's own attention (or the textbook steps)."""
    return json_response(await runner.run(run_mha, MHAConfig.make(**req.model_dump())))
