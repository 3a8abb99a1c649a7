"""Put the hub's routes together: the streams (plain ASGI) and the feature routers (FastAPI)."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.routing import Route

from ..errors import ApiError
from ..streams.sse import StreamEndpoint
from .routing import api_error_handler, http_exception_handler, request_validation_handler

if TYPE_CHECKING:
    from ..hub import Hub

FEATURE_ROUTERS = ("publish", "sessions", "health", "devices", "deliveries", "webpush")


def build_router(hub: Hub) -> APIRouter:
    router = APIRouter(lifespan=hub.lifespan)
    s = hub.settings
    streams = {
        "/v1/events": StreamEndpoint(
            hub, name="events", required_role=None, limit=s.max_connections_per_user
        ),
        "/v1/admin/events": StreamEndpoint(
            hub, name="admin", required_role="admin", limit=s.admin_max_connections_per_user
        ),
    }
    for path, endpoint in streams.items():
        router.routes.append(Route(path, endpoint, methods=["GET"], include_in_schema=False))
    for name in FEATURE_ROUTERS:
        router.include_router(import_module(f"{__package__}.{name}").router)
    return router


def install_error_handlers(app: FastAPI) -> None:
    """JSON errors for everything the app answers, including unknown paths and methods."""
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(RequestValidationError, request_validation_handler)
    app.add_exception_handler(HTTPException, http_exception_handler)
