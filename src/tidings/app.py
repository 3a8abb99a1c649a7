"""The standalone server's ASGI app (`tidings serve`): the hub mounted on an otherwise empty FastAPI app."""

from __future__ import annotations

import gc

from fastapi import FastAPI
from starlette.types import ASGIApp

from . import __version__
from .config import load_settings
from .hub import Hub
from .logs import configure_logging


def create_app(hub: Hub | None = None) -> ASGIApp:
    """An app serving only tidings. Used by uvicorn as a factory, so each worker process builds its own hub."""
    if hub is None:
        settings = load_settings()
        configure_logging(settings)
        hub = Hub(settings)
    app = FastAPI(title="tidings", version=__version__, docs_url="/docs", redoc_url=None)
    hub.mount(app)
    # Everything allocated so far lives as long as the process: keep it out of the cyclic GC's walks, which at
    # 10k streams otherwise pause the loop for a noticeable time (bench/FINDINGS.md).
    gc.collect()
    gc.freeze()
    return hub.fast_streams(app)
