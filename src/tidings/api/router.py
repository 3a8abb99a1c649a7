"""Put the hub's HTTP surface together: the streams (plain ASGI) and the feature routers (FastAPI).

app = FastAPI()
mount(app, hub)                       # routes, the hub's lifespan, JSON error handlers
# or: app.include_router(build_router(hub))
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
from .deps import HUB_STATE
from .errors import http_exception_handler, request_validation_handler, tidings_error_handler
from .openapi import stream_docs
from .shutdown import drain_on_signals
from .stream import StreamEndpoint

FEATURE_ROUTERS = (
    "publish", "sessions", "health", "devices", "deliveries", "webpush", "preferences", "presence",
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
    }


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


def mount(app: FastAPI, hub: Hub, *, handle_signals: bool = True) -> None:
    """Include the hub's routes (and lifespan) in `app`, and render every error as JSON."""
    install_error_handlers(app)
    app.include_router(build_router(hub, handle_signals=handle_signals))


class StreamFastPath:
    """Sends `GET` on the stream paths straight to their endpoints, around the app's middleware stack.

    Measured (bench/FINDINGS.md): the framework's middleware chain costs a quarter of the CPU of opening a stream
    and 4 wrapper frames on every write, and its coroutines make up most of an idle stream's memory. The routes
    stay registered on the router as well, so an app that is not wrapped serves the same streams, only slower.
    """

    def __init__(self, app: ASGIApp, endpoints: Mapping[str, StreamEndpoint]) -> None:
        self.app = app
        self._endpoints = dict(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            endpoint = self._endpoints.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """JSON errors for everything the app answers, including unknown paths and methods."""
    app.add_exception_handler(TidingsError, tidings_error_handler)
    app.add_exception_handler(RequestValidationError, request_validation_handler)
    app.add_exception_handler(HTTPException, http_exception_handler)
