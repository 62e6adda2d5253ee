"""POST /api/detect: heads found the standard way (headscope/analyses/detect.py), a long job of a few steps."""

from fastapi import APIRouter, Request

from headscope.analyses.detect import NotDetectable, detect_heads
from headscope.server.deps import ModelsDep, RunnerDep, SettingsDep, address_of, pick_text_model
from headscope.server.encoding import json_response
from headscope.server.errors import ApiError, ErrorCode
from headscope.server.schemas.common import ERROR_RESPONSES
from headscope.server.schemas.detect import DetectRequest, DetectResponse

router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)


@router.post("/detect", response_model=DetectResponse)
async def detect(req: DetectRequest, request: Request, models: ModelsDep, runner: RunnerDep, settings: SettingsDep):
    """Every head's previous-token, duplicate-token and induction score (TransformerLens' detect_head; Olsson et
    al. 2022) on seeded random word sequences written twice and on natural sentences, with the inputs and seed."""
    model = pick_text_model(models, req.model, "/api/detect runs repeated random token sequences")
    if req.sequences > settings.detect_max_sequences:
        raise ApiError(ErrorCode.too_many_texts, f"sequences is {req.sequences}; the limit is "
                       f"{settings.detect_max_sequences}", limit=settings.detect_max_sequences)  # no count: it may not fit JSON
    async with runner.long_job(address_of(request)):
        try:
            answer = await runner.step(detect_heads, model, req.seed, req.sequences, req.words, req.natural)
        except NotDetectable as e:
            raise ApiError(ErrorCode.not_detectable, str(e)) from None
    return json_response(answer)
