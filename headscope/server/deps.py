"""Typed dependencies of the routes: what a route may ask for (the served models, the model runner, the
settings, the metrics kept for /api/heads), and the small checks every route makes alike."""

from typing import Annotated

from fastapi import Depends, Request

from headscope.models.analysis import AttentionModel
from headscope.server.errors import ApiError, ErrorCode
from headscope.server.recent_heads import RecentHeads
from headscope.server.runner import ModelRunner
from headscope.server.settings import Settings


def get_models(request: Request) -> dict[str, AttentionModel]:
    return request.app.state.models


def get_runner(request: Request) -> ModelRunner:
    return request.app.state.runner


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_recent_heads(request: Request) -> RecentHeads:
    return request.app.state.recent_heads


ModelsDep = Annotated[dict[str, AttentionModel], Depends(get_models)]
RunnerDep = Annotated[ModelRunner, Depends(get_runner)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RecentHeadsDep = Annotated[RecentHeads, Depends(get_recent_heads)]


def pick_model(models: dict[str, AttentionModel], name: str | None) -> AttentionModel:
    """The named model, or the default (the first served) when no name is given; 422 naming the served ones."""
    if name is None:
        return next(iter(models.values()))
    if name not in models:
        raise ApiError(ErrorCode.unknown_model, f"unknown model {name!r}; available: {', '.join(models)}",
                       available=list(models))
    return models[name]


def pick_text_model(models: dict[str, AttentionModel], name: str | None, feature: str) -> AttentionModel:
    """pick_model, for a feature that reads texts: an image model gets 422 not_for_images naming why."""
    model = pick_model(models, name)
    if model.info.takes != "text":
        raise ApiError(ErrorCode.not_for_images, f"{feature}, so it has no meaning for {model.info.name}, which "
                       f"takes an {model.info.takes}, not a text (GET /api/models `takes`)", takes=model.info.takes)
    return model


def address_of(request: Request) -> str | None:
    """Who asks, by address: what the per-client limits count (long_jobs_per_client); None if unknown."""
    return request.client.host if request.client else None


def client_of(request: Request) -> tuple[str, int] | None:
    """Who asks: the connection (address, port), for the runner's fair line; None if unknown."""
    return (request.client.host, request.client.port) if request.client else None
