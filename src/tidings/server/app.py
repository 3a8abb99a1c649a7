"""The standalone server's ASGI app (`tidings serve`): the hub mounted on an otherwise empty FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp

from .. import __version__
from ..api import StreamFastPath, build_router, install_error_handlers, stream_endpoints
from ..api.cors import CorsMiddleware
from ..api.router import cors_policy
from ..config import load_settings
from ..hub import Hub
from ..logs import configure_logging


def create_app(hub: Hub | None = None, *, handle_signals: bool = True) -> ASGIApp:
    """An app serving only tidings. Used by uvicorn as a factory, so each worker process builds its own hub.

    The stream paths bypass the app's middleware (`StreamFastPath`); the process-wide tuning that only suits a
    dedicated server (garbage collector thresholds) is `server.serve`'s, not this factory's.
    """
    if hub is None:
        settings = load_settings()
        configure_logging(settings)
        hub = Hub(settings)
    # the API's description is off in production unless asked for (TIDINGS_DOCS_ENABLED): a public server need
    # not publish a map of itself
    docs = hub.settings.effective_docs_enabled
    app = FastAPI(
        title="tidings",
        version=__version__,
        docs_url="/docs" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        redoc_url=None,
    )
    install_error_handlers(app)
    streams = stream_endpoints(hub)
    app.include_router(build_router(hub, streams=streams, handle_signals=handle_signals))
    cors = cors_policy(hub)
    if cors is not None:  # the other routes' CORS; the fast path applies the same policy to the streams
        app.add_middleware(CorsMiddleware, policy=cors)
    return StreamFastPath(app, streams, cors=cors)
