"""Long jobs streamed as newline-delimited JSON: `{"done": n, "total": N}` lines, then `{"result": ...}`; a
failure once the answer has begun becomes one last line `{"error": code, "detail": words}` (the status is
already sent), never a cut stream."""

from headscope.server.encoding import dumps
from headscope.server.errors import ErrorCode
from headscope.server.runner import Busy


async def ndjson(events, refused: tuple[type[Exception], ...] = (), failed: ErrorCode | None = None):
    """The events as lines. Busy becomes a `busy` line; an exception of `refused` a line of its own `code` (or of
    `failed` when it has none)."""
    try:
        async for event in events:
            yield dumps(event) + b"\n"
    except Busy as e:
        yield dumps({"error": ErrorCode.busy.value, "detail": str(e)}) + b"\n"
    except refused as e:
        code = getattr(e, "code", None) or failed
        yield dumps({"error": ErrorCode(code).value, "detail": str(e)}) + b"\n"


async def prepend(first: dict, events):
    """`first`, then the rest of the events: a stream whose first step was taken before the answer began."""
    yield first
    async for event in events:
        yield event
