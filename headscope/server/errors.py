"""Every error leaves as JSON `{"error": code, "detail": words, ...}` with a 4xx (or 503) status.

`ErrorCode` is the one list of codes: each with its status and what it means. The schema of every error
answer (`ErrorResponse.error`) is this enum, so /openapi.json lists them all; a code not in it cannot be raised
(`ApiError` takes a member or its value, and tests/server/test_errors.py checks every code written anywhere).
Errors about one field of the request name it in `field` (e.g. `ablate`), so a client can point at it.

FastAPI's default validation handler echoes the offending input back, and fails (500) when that input is
bytes that are not UTF-8; ours reports location, message and type only.
"""

from enum import Enum

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from headscope.analyses.mechanism import NotExplainable, OutOfRange
from headscope.analyses.playground import InvalidConfig
from headscope.models.analysis import TooManyCharacters, TooManyTokens
from headscope.models.images import NotAnImage
from headscope.models.interventions import BadAblation
from headscope.models.metric_choice import BadMetric
from headscope.server.encoding import json_response
from headscope.server.runner import Busy, TooManyJobs


class ErrorCode(str, Enum):
    """code -> (HTTP status, meaning)."""

    def __new__(cls, value: str, status: int, meaning: str):
        member = str.__new__(cls, value)
        member._value_ = value
        member.status, member.meaning = status, meaning
        return member

    # the request itself
    bad_request = "bad_request", 400, "The request line or headers are malformed."
    invalid_json = "invalid_json", 400, "The body is not valid JSON."
    client_disconnected = "client_disconnected", 400, "The client went away before a long job finished."
    not_found = "not_found", 404, "No such path."
    method_not_allowed = "method_not_allowed", 405, "The path does not take this method."
    request_timeout = "request_timeout", 408, "The request line, headers or body arrived too slowly."
    body_too_large = "body_too_large", 413, "The body is larger than max_body_bytes."
    unsupported_media_type = "unsupported_media_type", 415, "The body is not JSON."
    unknown_host = "unknown_host", 421, "The Host header is not one this server answers to (DNS rebinding defence)."
    headers_too_large = "headers_too_large", 431, "The request line and headers are larger than max_header_bytes."
    too_many_requests = "too_many_requests", 429, "This client holds as many long jobs as it may."
    busy = "busy", 503, "Too many requests are waiting; retry after the Retry-After header."
    http_error = "http_error", 400, "Another HTTP error."
    # fields
    validation_error = "validation_error", 422, "A field is missing, of the wrong type or out of its range."
    empty_text = "empty_text", 422, "A text is empty or only whitespace."
    invalid_unicode = "invalid_unicode", 422, "A text is not valid Unicode (a lone surrogate)."
    unknown_model = "unknown_model", 422, "The model is not one this server serves (GET /api/models)."
    unknown_kind = "unknown_kind", 422, "The attention kind is not one of the model's."
    no_such_head = "no_such_head", 422, "The layer or head is out of the model's range."
    out_of_range = "out_of_range", 422, "A kind, layer, head or query position the model or text does not have."
    wrong_input = "wrong_input", 422, "A text sent to a model that takes an image, or an image to one that takes text."
    bad_image = ("bad_image", 422, "The image is not a PNG or JPEG Headscope reads (broken, animated, CMYK, 16-bit "
                 "...), or one the model cannot fit to its one patch grid.")
    # sizes
    image_too_large = "image_too_large", 422, "The image has more bytes than max_image_bytes or pixels than max_image_pixels."
    too_many_characters = "too_many_characters", 422, "A text has more characters than the model's max_chars."
    too_many_tokens = "too_many_tokens", 422, "A text (or all texts together) has more tokens than allowed."
    too_many_texts = "too_many_texts", 422, "More texts than the request's limit."
    too_many_new_tokens = "too_many_new_tokens", 422, "More tokens to generate than the model's max_new_tokens."
    too_many_heads = "too_many_heads", 422, "The list of heads is longer than the model has heads."
    too_many_pairs = "too_many_pairs", 422, "More probe pairs than probe_max_pairs."
    answer_too_large = "answer_too_large", 422, "A json answer would hold more than max_json_floats weights."
    # what a model can do
    not_generating = "not_generating", 422, "A generation field sent to a model that does not generate that way."
    bad_ablation = "bad_ablation", 422, "The heads to knock out are not the model's, or repeat."
    not_ablatable = "not_ablatable", 422, "The model's heads cannot be reached one by one."
    not_for_images = "not_for_images", 422, "The feature reads texts and has no meaning for an image model."
    no_value_norms = "no_value_norms", 422, "Value norms need every attention module and its W_O."
    not_explainable = "not_explainable", 422, "The model's attention modules cannot be captured."
    invalid_config = "invalid_config", 422, "A playground configuration nn.MultiheadAttention refuses."
    # probes and importance
    invalid_pairs = "invalid_pairs", 422, "A line of the probe pairs is not a valid pair."
    no_usable_pairs = "no_usable_pairs", 422, "No probe pair can be scored on the model."
    not_probeable = "not_probeable", 422, "The model has no attention kind over its input tokens to probe."
    not_detectable = "not_detectable", 422, "The model has no self-attention over its input tokens to score."
    no_texts = "no_texts", 422, "An empty list of texts."
    nothing_to_predict = "nothing_to_predict", 422, "Every text is a single token: nothing to predict."
    not_measurable = "not_measurable", 422, "Importance has no way to measure this model."
    importance_failed = "importance_failed", 422, "The model refused a step of importance after the answer began."
    # patching and attribution
    token_count_mismatch = "token_count_mismatch", 422, "The clean and corrupted texts are not the same number of tokens."
    not_one_token = "not_one_token", 422, "An answer or wrong token is not exactly one token of the model."
    no_metric = "no_metric", 422, "The metric asked for (loss, logit_diff, prob) has no meaning for the model."
    not_patchable = "not_patchable", 422, "Patching, or the metric asked for, has no meaning for the model."
    not_attributable = "not_attributable", 422, "Direct logit attribution has no meaning for the model."
    too_much_work = "too_much_work", 422, "The patching grid runs more positions than patch_max_work."
    patching_failed = "patching_failed", 422, "The model refused a step of patching after the answer began."


STATUS_CODES = {400: ErrorCode.bad_request, 404: ErrorCode.not_found, 405: ErrorCode.method_not_allowed,
                408: ErrorCode.request_timeout, 413: ErrorCode.body_too_large,
                415: ErrorCode.unsupported_media_type, 421: ErrorCode.unknown_host,
                422: ErrorCode.validation_error, 429: ErrorCode.too_many_requests,
                431: ErrorCode.headers_too_large, 503: ErrorCode.busy}  # HTTP status -> its code


class ApiError(Exception):
    """An error a route raises on purpose; becomes `{"error": code, "detail": detail, **extra}` with the code's
    status. `code`: an ErrorCode or its value (ValueError for any other)."""

    def __init__(self, code: ErrorCode | str, detail: str, **extra):
        self.code = ErrorCode(code)
        self.status_code, self.detail, self.extra = self.code.status, detail, extra


def error_response(code: ErrorCode | str, detail: str, headers: dict | None = None, **extra):
    code = ErrorCode(code)
    response = json_response({"error": code.value, "detail": detail, **extra}, code.status)
    response.headers.update(headers or {})
    return response


def _location(loc) -> str:
    return ".".join(str(part) for part in loc) or "body"


async def on_validation_error(request: Request, exc: RequestValidationError):
    errors = [{"loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
               "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in exc.errors()]
    if any(e["type"] == "json_invalid" for e in errors):
        ctx = exc.errors()[0].get("ctx") or {}
        return error_response(ErrorCode.invalid_json, f"the body is not valid JSON: {ctx.get('error', 'decode error')} "
                              f"at character {errors[0]['loc'][-1]}", errors=errors)
    if any(isinstance(e.get("input"), bytes | bytearray) for e in exc.errors()):
        return error_response(ErrorCode.unsupported_media_type,
                              "send the body as a JSON object with the header Content-Type: application/json")
    detail = "; ".join(f"{_location(e['loc'])}: {e['msg']}" for e in errors)
    return error_response(ErrorCode.validation_error, detail, errors=errors)


async def on_http_error(request: Request, exc: HTTPException):
    code = STATUS_CODES.get(exc.status_code, ErrorCode.http_error)
    response = json_response({"error": code.value, "detail": str(exc.detail)}, exc.status_code)
    response.headers.update(exc.headers or {})
    return response


async def on_api_error(request: Request, exc: ApiError):
    return error_response(exc.code, exc.detail, **exc.extra)


async def on_too_many_tokens(request: Request, exc: TooManyTokens):
    return error_response(ErrorCode.too_many_tokens, str(exc), count=exc.count, limit=exc.limit)


async def on_too_many_characters(request: Request, exc: TooManyCharacters):
    return error_response(ErrorCode.too_many_characters, str(exc), count=exc.count, limit=exc.limit)


async def on_out_of_range(request: Request, exc: OutOfRange):
    return error_response(ErrorCode.out_of_range, str(exc), field=exc.field, valid=exc.valid)


async def on_not_explainable(request: Request, exc: NotExplainable):
    return error_response(ErrorCode.not_explainable, str(exc))


async def on_invalid_config(request: Request, exc: InvalidConfig):
    return error_response(ErrorCode.invalid_config, str(exc), rule=exc.rule)


async def on_not_an_image(request: Request, exc: NotAnImage):
    """A picture the image model cannot fit (e.g. a grid other than its one patch grid): 422 bad_image."""
    return error_response(ErrorCode.bad_image, str(exc), field="image")


async def on_bad_ablation(request: Request, exc: BadAblation):
    return error_response(ErrorCode.bad_ablation, str(exc), field="ablate")


async def on_bad_metric(request: Request, exc: BadMetric):
    return error_response(exc.code, str(exc), **exc.extra)


async def on_busy(request: Request, exc: Busy):
    return error_response(ErrorCode.busy, str(exc), headers={"Retry-After": "1"})


async def on_too_many_jobs(request: Request, exc: TooManyJobs):
    return error_response(ErrorCode.too_many_requests, str(exc), headers={"Retry-After": "5"}, limit=exc.limit)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(TooManyTokens, on_too_many_tokens)
    app.add_exception_handler(TooManyCharacters, on_too_many_characters)
    app.add_exception_handler(OutOfRange, on_out_of_range)
    app.add_exception_handler(NotExplainable, on_not_explainable)
    app.add_exception_handler(InvalidConfig, on_invalid_config)
    app.add_exception_handler(Busy, on_busy)
    app.add_exception_handler(NotAnImage, on_not_an_image)
    app.add_exception_handler(TooManyJobs, on_too_many_jobs)
    app.add_exception_handler(BadAblation, on_bad_ablation)
    app.add_exception_handler(BadMetric, on_bad_metric)
