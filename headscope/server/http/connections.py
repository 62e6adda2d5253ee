"""The HTTP server: uvicorn, with limits on what one connection may hold, and for how long.

`make_server` builds it; `headscope serve`, the tests and the benchmarks all use it.

uvicorn on httptools has no limit on the size of a request's headers (llhttp buffers a 100 MB
header whole), no deadline for them (a connection that sends nothing stays open for good), no
deadline for an answer the client stops reading, and a connection limit that counts idle
connections and answers in plain text. `HeadscopeProtocol` adds each, and every refusal is the
API's JSON error:

- request line and headers over `max_header_bytes`: 431, and the connection is closed;
- request line and headers not complete within `header_timeout_s` of the connection opening (or of
  the first byte of a later request on it): closed, with 408 if part of a request came;
- an answer left unread for `send_timeout_s` (the write buffer stays over its high-water mark): the
  connection is dropped, and the answer's memory freed;
- answers left unread by all clients together over `max_unread_bytes` (each stalled connection's
  write buffer, summed when another one stalls): the connection that stalled first is dropped,
  until the rest fit, so many slow readers cannot hold the server's memory between them;
- over `max_connections` open, a new connection closes the one that has waited longest for a
  request (nothing in progress, nothing left to send), so idle connections never lock out real
  users; if every connection is busy, the new one's requests get 503.

uvicorn's own `limit_concurrency` is not used. Parsing stays with httptools rather than h11 (whose
size limit uvicorn exposes): a small request such as GET /api/models took 1.0 ms with this protocol
against 1.55 ms with h11, client included; the header check costs one comparison per read.
"""

import asyncio
import socket
from functools import partial

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from headscope.server.encoding import dumps
from headscope.server.errors import ErrorCode, error_response
from headscope.server.settings import Settings

BACKLOG = 2048  # uvicorn's default


def make_server(app, host: str, port: int, settings: Settings, log_level: str = "info") -> uvicorn.Server:
    """uvicorn serving `app` with Headscope's connection limits. Run it with `.run()`, or with
    `.run(sockets=[bind(host, port)])` to listen on a socket bound beforehand."""
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level,
        http=partial(HeadscopeProtocol, limits=settings),
        timeout_keep_alive=settings.keep_alive_s,
        limit_concurrency=None,  # HeadscopeProtocol limits connections, and answers in JSON
    )
    return uvicorn.Server(config)


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port and listening, as uvicorn would bind it; OSError (EADDRINUSE) if the port
    is taken. Port 0 binds a free port chosen by the system: read it with `sock.getsockname()[1]`."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # not shared with a live listener on Linux
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    sock.listen(BACKLOG)  # from now on connections wait in the backlog until the server runs, not refused
    return sock


async def busy(scope, receive, send) -> None:
    """The app for a connection that found every other one busy."""
    response = error_response(ErrorCode.busy, "the server has too many connections with requests in progress; "
                              "try again shortly", headers={"Retry-After": "1", "Connection": "close"})
    await response(scope, receive, send)


class HeadscopeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with limits on header size and time, unread answers and connections."""

    def __init__(self, *args, limits: Settings, **kwargs):
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.in_head = True  # waiting for (the rest of) a request line and headers
        self.head_bytes = 0  # bytes of it received so far
        self.head_timer: asyncio.TimerHandle | None = None
        self.send_timer: asyncio.TimerHandle | None = None  # set while the client is not reading its answer
        self.stalled_since = 0.0  # when it stopped reading
        self.idle_since = 0.0  # when it last started waiting for a request

    # -- the connection ------------------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.idle_since = self.loop.time()
        self.arm_head_timer()
        if len(self.connections) > self.limits.max_connections:
            self.make_room()

    def connection_lost(self, exc) -> None:
        for timer in (self.head_timer, self.send_timer):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def waiting_for_request(self) -> bool:
        """No request in progress, none queued, nothing left to send: closing it loses nobody's answer."""
        return ((self.cycle is None or self.cycle.response_complete) and not self.pipeline
                and self.transport is not None and not self.transport.is_closing()
                and self.transport.get_write_buffer_size() == 0)

    def make_room(self) -> None:
        idle = [c for c in self.connections
                if c is not self and isinstance(c, HeadscopeProtocol) and c.waiting_for_request()]
        if idle:
            min(idle, key=lambda c: c.idle_since).transport.close()
        else:
            self.app = busy  # every other connection has a request in progress

    # -- the request line and headers ----------------------------------------------------------------

    def arm_head_timer(self) -> None:
        if self.head_timer is None:
            self.head_timer = self.loop.call_later(self.limits.header_timeout_s, self.on_head_timeout)

    def on_head_timeout(self) -> None:
        self.head_timer = None
        if not self.in_head or self.transport.is_closing():
            return
        if self.head_bytes:
            self.refuse(ErrorCode.request_timeout, f"the request line and headers did not arrive within "
                        f"{self.limits.header_timeout_s:g} s")
        else:  # nothing was asked: nobody to answer
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head, self.head_bytes = True, 0
        self.arm_head_timer()  # a later request on a kept-alive connection: from its first byte

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        self.reading = len(data)  # a parser error in this read may be a head over the limit: send_400_response
        super().data_received(data)
        self.reading = 0
        if self.in_head and not self.transport.is_closing():
            # counted after parsing, when on_message_begin has reset the count; a read that also held
            # the end of the previous request's body counts whole, so a head may look a little larger
            self.head_bytes += len(data)
            if self.head_bytes > self.limits.max_header_bytes:
                self.refuse(ErrorCode.headers_too_large, "the request line and headers are larger than the "
                            f"limit of {self.limits.max_header_bytes} bytes")

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.idle_since = self.loop.time()

    def send_400_response(self, msg: str) -> None:  # uvicorn's answer to a malformed request, in JSON
        if self.head_bytes + getattr(self, "reading", 0) > self.limits.max_header_bytes:
            # httptools fails to parse a very long URL (90 KB: at the end of the head, in uvicorn's
            # on_headers_complete) before the check in data_received sees the read: say which limit it passed
            self.refuse(ErrorCode.headers_too_large, "the request line and headers are larger than the "
                        f"limit of {self.limits.max_header_bytes} bytes")
            return
        self.refuse(ErrorCode.bad_request, msg)

    def refuse(self, code: ErrorCode, detail: str) -> None:
        """Answer a request that never reached the app, and close the connection."""
        body = dumps({"error": code.value, "detail": detail})
        self.transport.write(b"".join([
            STATUS_LINE[code.status], b"content-type: application/json\r\n", b"x-content-type-options: nosniff\r\n",
            b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n", body]))
        self.in_head = False
        self.transport.close()

    # -- the answer ------------------------------------------------------------------------------------

    def pause_writing(self) -> None:  # the client is not reading as fast as we write
        super().pause_writing()
        if self.send_timer is None:
            self.stalled_since = self.loop.time()
            self.send_timer = self.loop.call_later(self.limits.send_timeout_s, self.transport.abort)
        self.bound_unread()
        self.loop.call_soon(self.bound_unread)  # again once the write that paused it has queued all it had

    def bound_unread(self) -> None:
        """Drop the connections that stalled first while the unread bytes of all of them exceed the limit."""
        stalled = sorted((c for c in self.connections if isinstance(c, HeadscopeProtocol) and c.send_timer is not None
                          and c.transport is not None and not c.transport.is_closing()),
                         key=lambda c: c.stalled_since)
        held = sum(c.transport.get_write_buffer_size() for c in stalled)
        for c in stalled[:-1]:  # the last to stall keeps its answer: the limit frees room for it
            if held <= self.limits.max_unread_bytes:
                break
            held -= c.transport.get_write_buffer_size()
            c.transport.abort()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.send_timer is not None:
            self.send_timer.cancel()
            self.send_timer = None
