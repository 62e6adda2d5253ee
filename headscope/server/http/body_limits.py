"""Request-body limits, checked before any route reads the body.

FastAPI's own `max_body_size` answers in plain text; ours answers in the API's JSON error
format, refuses a declared Content-Length over the limit before reading a byte, counts the
bytes of bodies sent without one, and gives a body a deadline so a client that trickles it
in ties up only its own connection, and not for long.
"""

import anyio
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from headscope.server.errors import ErrorCode, error_response


class BodyLimits:
    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout_s: float):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            response = error_response(ErrorCode.body_too_large, self.too_large(), limit=self.max_body_bytes)
            return await response(scope, receive, send)

        deadline = anyio.current_time() + self.body_timeout_s
        received = 0
        body_done = False

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # after the body, receive only reports a disconnect: no deadline
                return await receive()
            with anyio.move_on_after(deadline - anyio.current_time()) as scope_:
                message = await receive()
            if scope_.cancelled_caught:
                raise HTTPException(408, f"the request body did not arrive within {self.body_timeout_s:g} s")
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise HTTPException(413, self.too_large())
                body_done = not message.get("more_body", False)
            return message

        await self.app(scope, limited_receive, send)

    def too_large(self) -> str:
        return f"the request body is larger than the limit of {self.max_body_bytes} bytes"
