"""What a browser needs to be told: which Host names this server is, and what its pages may load.

DNS rebinding: a page at http://attacker.example:8000 whose name the attacker then points at
127.0.0.1 could read this server's answers as its own origin. The browser still sends
`Host: attacker.example:8000`, so `TrustedHosts` answers only names that are this machine
(`LOCAL_HOSTS`), the address the request came to, and the names given with `--allow-host`.

`SecurityHeaders` sends `X-Content-Type-Options: nosniff` and a Content-Security-Policy that lets
a page load only from this origin and be framed by no one; and sends `Vary` once (starlette-compress
adds `Accept-Encoding` to a Vary that already has it).
"""

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from headscope.server.errors import ErrorCode, error_response
from headscope.server.settings import LOCAL_HOSTS

# The page: scripts and data from here only. Plotly adds <style> elements, hence 'unsafe-inline' for styles
# (styles cannot run code); the page's favicon is a data: URL.
PAGE_POLICY = ("default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
# /docs and /redoc (fastapi-offline) start Swagger UI and ReDoc with an inline script; ReDoc runs a blob: worker.
DOCS_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data:; worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'")
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc")


def host_name(host: str) -> str:
    """The name part of a Host header: lower case, without port or trailing dot ("[::1]:8000" -> "[::1]")."""
    host = host.strip().lower()
    if host.startswith("["):
        name = host[: host.find("]") + 1] if "]" in host else host
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name.rstrip(".")


class TrustedHosts:
    """Refuse (421, JSON) a request whose Host header names another server."""

    def __init__(self, app: ASGIApp, allowed: tuple[str, ...] = ()):
        self.app = app
        self.any = "*" in allowed
        self.allowed = {host_name(h) for h in (*LOCAL_HOSTS, *allowed)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.any:
            return await self.app(scope, receive, send)
        host = Headers(scope=scope).get("host", "")
        name = host_name(host)
        server = scope.get("server") or ("", None)
        bound = f"[{server[0]}]" if ":" in server[0] else server[0]  # the address the request came to
        if name in self.allowed or name == bound.lower():
            return await self.app(scope, receive, send)
        response = error_response(ErrorCode.unknown_host,
            f"this server does not answer to the host {host!r}: it answers to {', '.join(sorted(self.allowed))} and "
            "the address it listens on. To serve it under another name, start it with --allow-host NAME",
            host=host)
        await response(scope, receive, send)


class SecurityHeaders:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        policy = DOCS_POLICY if scope["path"] in DOCS_PATHS else PAGE_POLICY

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Content-Security-Policy", policy)
                vary = headers.getlist("vary")
                if vary:
                    del headers["vary"]
                    names = {v.strip().lower(): v.strip() for value in vary for v in value.split(",") if v.strip()}
                    headers["Vary"] = ", ".join(names.values())
            await send(message)

        await self.app(scope, receive, send_with_headers)
