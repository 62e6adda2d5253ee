"""The app factory: `create_app(settings)` builds a FastAPI app with its models loaded once."""

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette_compress import CompressMiddleware

from headscope.models.analysis import AttentionModel
from headscope.models.registry import load_models
from headscope.server.errors import install_error_handlers
from headscope.server.files import STATIC
from headscope.server.http.body_limits import BodyLimits
from headscope.server.http.security import SecurityHeaders, TrustedHosts
from headscope.server.recent_heads import RecentHeads
from headscope.server.routes import (
    attention,
    corpus,
    detect,
    importance,
    mechanism,
    models,
    pages,
    patching,
    playground,
    probes,
    study,
)
from headscope.server.runner import ModelRunner
from headscope.server.settings import Settings

# one thin file per feature (headscope/server/routes/): the JSON API, then the page and the files it loads
ROUTERS = [r.router for r in (models, attention, corpus, mechanism, playground, study, probes, importance, detect,
                              patching, pages)]


def create_app(settings: Settings | None = None, models: dict[str, AttentionModel] | None = None) -> FastAPI:
    """Build the app. `models` (name -> model) skips loading, for tests that share loaded models."""
    settings = settings or Settings()
    app = FastAPIOffline(  # a FastAPI app whose /docs and /redoc load Swagger UI from our server, not a CDN
        title="Headscope",
        summary="Every attention head of a transformer, for any sentence.",
        description="Attention weights of every layer and head, per-head metrics and roles, and corpus "
        "averages. Arrays are indexed [layer][head][query_pos][key_pos]. Errors are JSON: "
        '`{"error": code, "detail": words}`.',
        version="1.0.0",
    )
    app.state.settings = settings
    app.state.runner = ModelRunner(settings.max_waiting, settings.max_batch_tokens, settings.max_batch_size,
                                   settings.newcomer_lead_s, settings.long_jobs_per_client)
    app.state.recent_heads = RecentHeads()  # metrics computed after an answer that left them out
    app.state.models = models if models is not None else app.state.runner.run_now(load_models, settings.models)

    install_error_handlers(app)
    # the last added runs first: security headers on every answer, then the Host check, then body limits
    # the page, scripts, docs and small answers; /api/attention compresses its own, off the event loop
    app.add_middleware(CompressMiddleware, minimum_size=1000, zstd_level=3, brotli=False, gzip_level=6)
    app.add_middleware(BodyLimits, max_body_bytes=settings.max_body_bytes, body_timeout_s=settings.body_timeout_s)
    app.add_middleware(TrustedHosts, allowed=settings.allowed_hosts)
    app.add_middleware(SecurityHeaders)

    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    name_models_in_schema(app, list(app.state.models))
    return app


def name_models_in_schema(app: FastAPI, names: list[str]) -> None:
    """List the served model names as the `enum` of every request's `model` field in /openapi.json."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            for component in schema["components"]["schemas"].values():
                model = component.get("properties", {}).get("model")
                if model is not None and component["title"].endswith("Request"):
                    for option in model.get("anyOf", [model]):
                        if option.get("type") == "string":
                            option["enum"] = names
        return app.openapi_schema

    app.openapi = openapi
