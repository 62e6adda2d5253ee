"""POST /api/mha and GET /api/mha/presets: torch.nn.MultiheadAttention on seeded random inputs, against our own
attention (the Playground tab; headscope/analyses/playground.py)."""

from dataclasses import asdict

from fastapi import APIRouter

from headscope.analyses.playground import LIMITS as MHA_LIMITS
from headscope.analyses.playground import PRESETS as MHA_PRESETS
from headscope.analyses.playground import MHAConfig
from headscope.analyses.playground import run as run_mha
from headscope.server.deps import RunnerDep
from headscope.server.encoding import json_response
from headscope.server.schemas.common import ERROR_RESPONSES
from headscope.server.schemas.playground import MHAPresetsResponse, MHARequest, MHAResponse

router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)


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

