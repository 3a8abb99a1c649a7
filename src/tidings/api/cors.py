"""CORS for the routes browsers call from other origins: the streams, devices, stream tickets, the push key.

Deliberate choices:
- An allow-list of exact origins (TIDINGS_CORS_ORIGINS). A listed origin gets itself back in
  `Access-Control-Allow-Origin`, with `Vary: Origin` and credentials allowed; an unlisted one gets no CORS header
  at all, so the browser blocks the answer (its preflight is refused with a JSON 403). Never a `*` with
  credentials. `/v1/client.js` answers `*` without credentials itself (api/clients.py): a module script is public.
- Only requests that carry an allowed `Origin` are touched: same-origin requests and server-to-server calls pass
  through untouched, so streams pay nothing for this unless they are cross-origin.
- The stream fast path (api/router.py: StreamFastPath) bypasses the app's middleware, so it asks this policy
  directly for preflights and for the headers of cross-origin streams.
- Paths are matched below the app's mount point (`root_path`) and an optional prefix, so a hub mounted under
  `/hub` in a host app is covered the same way.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The routes browsers call cross-origin: streams, devices, tickets, the VAPID key; a user's own inbox, presence
# and preferences when they exist. Admin routes are not here: the dashboard is served by the hub itself.
CORS_PATHS = (
    "/v1/events",
    "/v1/admin/events",
    "/v1/devices",
    "/v1/stream-tickets",
    "/v1/webpush/vapid-public-key",
    "/v1/inbox",
    "/v1/presence",
    "/v1/preferences",
)
ALLOW_METHODS = b"GET, POST, PUT, PATCH, DELETE"
ALLOW_HEADERS = b"Authorization, Content-Type, Last-Event-ID"
EXPOSE_HEADERS = b"Date, Retry-After, X-Reconnect-Delay"
MAX_AGE = b"600"


def route_path(scope: Scope, prefix: str = "") -> str:
    """The path below the app's mount point (Starlette keeps the full path and sets `root_path`) and `prefix`."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if prefix and path.startswith(prefix):
        path = path[len(prefix) :]
    return path


class CorsPolicy:
    """Which origins may call which paths; answers preflights and adds the headers of allowed answers."""

    def __init__(
        self, origins: Iterable[str], *, paths: Iterable[str] = CORS_PATHS, prefix: str = ""
    ) -> None:
        self.origins = frozenset(origins)
        self.paths = tuple(paths)
        self.prefix = prefix.rstrip("/")

    def covers(self, scope: Scope) -> bool:
        path = route_path(scope, self.prefix)
        return any(path == p or path.startswith(p + "/") for p in self.paths)

    @staticmethod
    def origin_of(scope: Scope) -> str | None:
        for name, value in scope.get("headers", ()):
            if name == b"origin":
                return str(value.decode("latin-1"))
        return None

    @staticmethod
    def is_preflight(scope: Scope) -> bool:
        return scope["method"] == "OPTIONS" and b"access-control-request-method" in dict(scope["headers"])

    async def preflight(self, origin: str, send: Send) -> None:
        """Answer an OPTIONS preflight: 204 with the grants for a listed origin, a JSON 403 without any CORS
        header for another (the browser then refuses the real request)."""
        if origin in self.origins:
            headers = [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-credentials", b"true"),
                (b"access-control-allow-methods", ALLOW_METHODS),
                (b"access-control-allow-headers", ALLOW_HEADERS),
                (b"access-control-max-age", MAX_AGE),
                (b"vary", b"Origin"),
            ]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        body = orjson.dumps(
            {"error": "cors_refused", "message": "this origin is not in TIDINGS_CORS_ORIGINS", "field": None}
        )
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def wrap(self, origin: str, send: Send) -> Send:
        """`send` with the CORS headers of an allowed cross-origin answer added to its start."""
        extra = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-expose-headers", EXPOSE_HEADERS),
        ]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = Headers(raw=message["headers"]).mutablecopy()
                for name, value in extra:
                    headers.raw.append((name, value))
                headers.add_vary_header("Origin")
                message = {**message, "headers": headers.raw}
            await send(message)

        return send_with_cors

    async def handle(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
        """Serve a request through `app` under this policy."""
        if scope["type"] == "http" and self.covers(scope):
            origin = self.origin_of(scope)
            if origin is not None:
                if self.is_preflight(scope):
                    await self.preflight(origin, send)
                    return
                if origin in self.origins:
                    send = self.wrap(origin, send)
        await app(scope, receive, send)


class CorsMiddleware:
    """The policy as ASGI middleware: `app.add_middleware(CorsMiddleware, policy=CorsPolicy([...]))`."""

    def __init__(self, app: ASGIApp, policy: CorsPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.policy.handle(scope, receive, send, self.app)
