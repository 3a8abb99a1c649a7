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
    # Everything allocated so far lives as long as the process: keep it out of the cyclic GC's walks. And each
    # delivery allocates a short-lived future per recipient, so with the default gen-0 threshold (700) a fan-out
    # to 10k streams runs collections that walk every stream: measured, a 50,000 threshold cuts CPU per
    # delivery by 40 % and p50 by 75 % at 10k streams (bench/FINDINGS.md, round 2).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    return hub.fast_streams(app)
