"""GET /api/models: every model this server runs, every limit it enforces, every per-head metric."""

from dataclasses import asdict

from fastapi import APIRouter

from headscope.analyses.metrics import METRICS_ABOUT
from headscope.server.deps import ModelsDep, SettingsDep
from headscope.server.encoding import json_response
from headscope.server.schemas.common import ERROR_RESPONSES
from headscope.server.schemas.models import ModelsResponse
from headscope.server.settings import public_limits

router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)


@router.get("/models", response_model=ModelsResponse)
def list_models(models: ModelsDep, settings: SettingsDep):
    """Every model this server runs, with its size, its attention kinds and their layouts, and the limits
    of a request; the first model is the default."""
    return json_response({
        "default": next(iter(models)),
        "models": [model_entry(m) for m in models.values()],
        "limits": public_limits(settings),
        "metrics": METRICS_ABOUT,
    })


def model_entry(model) -> dict:
    """A model's info, and for an image model (`takes: image`) its `image`: the size it reads, its patches, classes."""
    image = getattr(model, "image", None) if model.info.takes == "image" else None
    return {**asdict(model.info), "image": None if image is None else asdict(image)}
