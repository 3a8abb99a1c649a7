"""Put the hub's routes together: the streams (plain ASGI) and the feature routers (FastAPI)."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import ApiError
from ..streams.sse import StreamEndpoint
from .routing import api_error_handler, http_exception_handler, request_validation_handler

if TYPE_CHECKING:
    from ..hub import Hub

FEATURE_ROUTERS = ("publish", "sessions", "health", "devices", "deliveries", "webpush")


def stream_endpoints(hub: Hub) -> dict[str, StreamEndpoint]:
    s = hub.settings
    return {
        "/v1/events": StreamEndpoint(
            hub, name="events", required_role=None, limit=s.max_connections_per_user
        ),
        "/v1/admin/events": StreamEndpoint(
            hub, name="admin", required_role="admin", limit=s.admin_max_connections_per_user
        ),
    }


def build_router(hub: Hub) -> APIRouter:
    router = APIRouter(lifespan=hub.lifespan)
    for path, endpoint in hub.stream_endpoints.items():
        router.routes.append(Route(path, endpoint, methods=["GET"], include_in_schema=False))
    for name in FEATURE_ROUTERS:
        router.include_router(import_module(f"{__package__}.{name}").router)
    return router


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
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(RequestValidationError, request_validation_handler)
    app.add_exception_handler(HTTPException, http_exception_handler)
