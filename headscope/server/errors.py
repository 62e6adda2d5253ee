"""Every error leaves as JSON `{"error": code, "detail": words}` with a 4xx status.

FastAPI's default validation handler echoes the offending input back, and fails (500) when
that input is bytes that are not UTF-8; ours reports location, message and type only.
"""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from headscope.analyses.mechanism import NotExplainable, OutOfRange
from headscope.analyses.playground import InvalidConfig
from headscope.models.analysis import TooManyCharacters, TooManyTokens
from headscope.models.interventions import BadAblation
from headscope.server.encoding import json_response
from headscope.server.runner import Busy

STATUS_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 408: "request_timeout",
                413: "body_too_large", 415: "unsupported_media_type", 421: "misdirected_request",
                422: "validation_error", 429: "too_many_requests", 431: "headers_too_large", 503: "busy"}


class ApiError(Exception):
    """An error a route raises on purpose; becomes `{"error": code, "detail": detail, **extra}`."""

    def __init__(self, status_code: int, code: str, detail: str, **extra):
        self.status_code, self.code, self.detail, self.extra = status_code, code, detail, extra


def error_response(status_code: int, code: str, detail: str, headers: dict | None = None, **extra):
    response = json_response({"error": code, "detail": detail, **extra}, status_code)
    response.headers.update(headers or {})
    return response


def _location(loc) -> str:
    return ".".join(str(part) for part in loc) or "body"


async def on_validation_error(request: Request, exc: RequestValidationError):
    errors = [{"loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
               "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in exc.errors()]
    if any(e["type"] == "json_invalid" for e in errors):
        ctx = exc.errors()[0].get("ctx") or {}
        return error_response(400, "invalid_json", f"the body is not valid JSON: {ctx.get('error', 'decode error')} "
                              f"at character {errors[0]['loc'][-1]}", errors=errors)
    if any(isinstance(e.get("input"), bytes | bytearray) for e in exc.errors()):
        return error_response(415, "unsupported_media_type",
                              "send the body as a JSON object with the header Content-Type: application/json")
    detail = "; ".join(f"{_location(e['loc'])}: {e['msg']}" for e in errors)
    return error_response(422, "validation_error", detail, errors=errors)


async def on_http_error(request: Request, exc: HTTPException):
    code = STATUS_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def on_api_error(request: Request, exc: ApiError):
    return error_response(exc.status_code, exc.code, exc.detail, **exc.extra)


async def on_too_many_tokens(request: Request, exc: TooManyTokens):
    return error_response(422, "too_many_tokens", str(exc), count=exc.count, limit=exc.limit)


async def on_out_of_range(request: Request, exc: OutOfRange):
    return error_response(422, "out_of_range", str(exc), field=exc.field, valid=exc.valid)


async def on_not_explainable(request: Request, exc: NotExplainable):
    return error_response(422, "not_explainable", str(exc))


async def on_invalid_config(request: Request, exc: InvalidConfig):
    return error_response(422, "invalid_config", str(exc), rule=exc.rule)
async def on_too_many_characters(request: Request, exc: TooManyCharacters):
    return error_response(422, "too_many_characters", str(exc), count=exc.count, limit=exc.limit)


async def on_bad_ablation(request: Request, exc: BadAblation):
    return error_response(422, "bad_ablation", str(exc))


async def on_busy(request: Request, exc: Busy):
    return error_response(503, "busy", str(exc), headers={"Retry-After": "1"})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(TooManyTokens, on_too_many_tokens)
    app.add_exception_handler(OutOfRange, on_out_of_range)
    app.add_exception_handler(NotExplainable, on_not_explainable)
    app.add_exception_handler(InvalidConfig, on_invalid_config)
    app.add_exception_handler(TooManyCharacters, on_too_many_characters)
    app.add_exception_handler(Busy, on_busy)
    app.add_exception_handler(BadAblation, on_bad_ablation)
