"""Put the hub's HTTP surface together: the streams (plain ASGI) and the feature routers (FastAPI).

app = FastAPI()
mount(app, hub)                       # routes, the hub's lifespan, JSON error handlers, CORS
mount(app, hub, prefix="/hub")        # the same under /hub (the dashboard at /hub/dashboard)
app.router.routes.append(stream_route(hub, "/api/admin/events", role="admin", limit=1))   # a stream of the app's
# or: app.include_router(build_router(hub)), and app.add_middleware(CorsMiddleware, policy=cors_policy(hub))
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from importlib import import_module
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import TidingsError
from ..hub import Hub
from .cors import CorsMiddleware, CorsPolicy, route_path
from .deps import HUB_STATE
from .errors import http_exception_handler, request_validation_handler, tidings_error_handler
from .feed import AdminFeed, FeedEndpoint
from .openapi import stream_docs
from .shutdown import drain_on_signals
from .stream import StreamEndpoint

FEATURE_ROUTERS = (
    "publish", "sessions", "health", "devices", "deliveries", "webpush", "preferences", "presence", "tickets",
    "dashboard", "clients", "inbox",
)  # fmt: skip


def stream_endpoints(hub: Hub) -> dict[str, StreamEndpoint]:
    """The SSE endpoints by path (one instance each, shared by the router and the fast path)."""
    s = hub.settings
    return {
        "/v1/events": StreamEndpoint(
            hub, name="events", required_role=None, limit=s.max_connections_per_user
        ),
        "/v1/admin/events": StreamEndpoint(
            hub, name="admin", required_role="admin", limit=s.admin_max_connections_per_user
        ),
        "/v1/admin/feed": FeedEndpoint(hub, AdminFeed(hub)),
    }


class StreamRoute(Route):
    """A `GET` route whose endpoint is one of the hub's streams (`stream_route`)."""

    endpoint: StreamEndpoint


def stream_route(
    hub: Hub,
    path: str,
    *,
    role: str | None = None,
    limit: int | None = None,
    keepalive: float | None = None,
    name: str | None = None,
) -> StreamRoute:
    """The hub's stream at a path of the app's own, for clients already in the field:

        app.router.routes.append(stream_route(hub, "/api/admin/events", role="admin", limit=1, keepalive=30))

    It is `/v1/events` in every respect (auth, topics, resume, budgets, revocation, shutdown) except that only
    users with `role` may open it (403 otherwise); beyond `limit` open streams per user on this route the oldest
    is closed (default TIDINGS_MAX_CONNECTIONS_PER_USER; 0 = unlimited); a quiet stream gets a keepalive after
    `keepalive` seconds (default TIDINGS_KEEPALIVE_SECONDS). `name` (default: the path) keys the limit and is the
    `endpoint` of its log lines. It serves under any ASGI server, writes to the socket itself under `tidings
    serve`'s protocol, and can skip the app's middleware as the standalone server's streams do:
    `StreamFastPath(app, {route.path: route.endpoint})`. CORS is the host app's for its own paths.
    """
    if not path.startswith("/") or "{" in path:
        raise ValueError(f"a stream path is a fixed path starting with '/', not {path!r}")
    if limit is not None and limit < 0:
        raise ValueError("limit must be 0 (unlimited) or more")
    if keepalive is not None and not keepalive > 0:
        raise ValueError("keepalive must be a positive number of seconds")
    endpoint = StreamEndpoint(
        hub,
        name=name or path,
        required_role=role,
        limit=hub.settings.max_connections_per_user if limit is None else limit,
        keepalive=keepalive,
    )
    return StreamRoute(path, endpoint, methods=["GET"], include_in_schema=False)


def cors_policy(hub: Hub, prefix: str = "") -> CorsPolicy | None:
    """The hub's CORS policy (TIDINGS_CORS_ORIGINS), or None when no origin is listed."""
    origins = hub.settings.cors_origins
    return CorsPolicy(origins, prefix=prefix) if origins else None


def build_router(
    hub: Hub,
    *,
    streams: Mapping[str, StreamEndpoint] | None = None,
    handle_signals: bool = True,
) -> APIRouter:
    """Every tidings route, with a lifespan that starts the hub (and drains its streams on SIGTERM/SIGINT)."""

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        setattr(app.state, HUB_STATE, hub)
        async with hub.lifespan(), drain_on_signals(hub, enabled=handle_signals):
            yield

    router = APIRouter(lifespan=lifespan)
    for path, endpoint in (streams or stream_endpoints(hub)).items():
        router.routes.append(Route(path, endpoint, methods=["GET"], include_in_schema=False))
    for name in FEATURE_ROUTERS:
        router.include_router(import_module(f"{__package__}.{name}").router)
    router.include_router(stream_docs())  # after the stream routes above, which answer these paths
    return router


def mount(app: FastAPI, hub: Hub, *, prefix: str = "", handle_signals: bool = True) -> None:
    """Include the hub's routes (and lifespan) in `app` (under `prefix`), render every error as JSON, and answer
    cross-origin browsers per TIDINGS_CORS_ORIGINS."""
    install_error_handlers(app)
    app.include_router(build_router(hub, handle_signals=handle_signals), prefix=prefix.rstrip("/"))
    policy = cors_policy(hub, prefix.rstrip("/"))
    if policy is not None:
        app.add_middleware(CorsMiddleware, policy=policy)


class StreamFastPath:
    """Sends `GET` on the stream paths straight to their endpoints, around the app's middleware stack.

    Measured (bench/FINDINGS.md): the framework's middleware chain costs a quarter of the CPU of opening a stream
    and 4 wrapper frames on every write, and its coroutines make up most of an idle stream's memory. The routes
    stay registered on the router as well, so an app that is not wrapped serves the same streams, only slower.
    Since it bypasses the middleware, it applies the CORS policy itself: preflights (`OPTIONS`, which browsers
    send before a stream with an Authorization or Last-Event-ID header) and the headers of cross-origin streams.
    Everything else goes to `app`, whose CORS middleware (`mount`/`create_app`) covers the other routes.
    """

    def __init__(
        self, app: ASGIApp, endpoints: Mapping[str, StreamEndpoint], *, cors: CorsPolicy | None = None
    ) -> None:
        self.app = app
        self._endpoints = dict(endpoints)
        self._cors = cors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self._endpoints.get(route_path(scope) if scope.get("root_path") else scope["path"])
            if endpoint is not None:
                if scope["method"] == "GET":
                    if self._cors is not None:
                        await self._cors.handle(scope, receive, send, endpoint)
                    else:
                        await endpoint(scope, receive, send)
                    return
                if scope["method"] == "OPTIONS" and self._cors is not None:
                    await self._cors.handle(scope, receive, send, self.app)
                    return
        await self.app(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """JSON errors for everything the app answers, including unknown paths and methods."""
    app.add_exception_handler(TidingsError, tidings_error_handler)
    app.add_exception_handler(RequestValidationError, request_validation_handler)
    app.add_exception_handler(HTTPException, http_exception_handler)
