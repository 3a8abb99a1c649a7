"""`tidings serve`: run the app under uvicorn with our protocol, in one process or several.

Process-wide tuning lives here, not in `create_app`: a host application that builds our app must keep its own
garbage-collector settings and open-files limit. The limits against hostile clients (limits.py) are set on the
protocol class here, once per process.
"""

from __future__ import annotations

import gc
import os
import shutil
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from ..config import Settings, load_settings
from ..hub import Hub
from .app import create_app
from .limits import ServerLimits, raise_fd_limit
from .protocol import TidingsHttpProtocol

HTTP_PROTOCOL = "tidings.server.protocol:TidingsHttpProtocol"  # httptools + the socket for streams
APP_FACTORY = "tidings.server.serve:worker_app"


def serve(settings: Settings, *, workers: int = 1) -> None:
    """Serve until SIGTERM/SIGINT. With `workers > 1`, uvicorn forks that many processes (each its own hub)."""
    raise_fd_limit()  # before the workers start: they inherit it
    configure_protocol(settings)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "backlog": 4096,
        "log_config": None,
        "timeout_graceful_shutdown": int(settings.shutdown_grace_seconds) + 2,
        "access_log": False,
        "http": HTTP_PROTOCOL,
    }
    if workers == 1:
        app = create_app(Hub(settings))
        tune_gc()
        uvicorn.Server(uvicorn.Config(app, **common)).run()
        return
    _multiprocess_metrics_dir(settings)
    os.environ.setdefault("TIDINGS_HOST", settings.host)
    os.environ["TIDINGS_PORT"] = str(settings.port)
    uvicorn.run(APP_FACTORY, factory=True, workers=workers, **common)


def worker_app() -> ASGIApp:
    """The factory each forked worker process calls: its own hub and app, then the same tuning."""
    app = create_app()
    configure_protocol(load_settings())
    tune_gc()
    return app


def configure_protocol(settings: Settings) -> None:
    """The hostile-client limits of this process's server (one server per process under `tidings serve`)."""
    TidingsHttpProtocol.limits = ServerLimits.from_settings(settings)


def tune_gc() -> None:
    """Everything allocated so far lives as long as the process: keep it out of the cyclic GC's walks. And each
    delivery allocates short-lived objects, so with the default gen-0 threshold (700) a fan-out to 10k streams
    runs collections that walk every stream: measured, a 50,000 threshold cuts CPU per delivery by 40 % and p50
    by 75 % at 10k streams (bench/FINDINGS.md, round 2)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _multiprocess_metrics_dir(settings: Settings) -> None:
    """prometheus_client's multiprocess mode: a fresh directory shared by this run's workers."""
    path = (settings.data_dir / "metrics").resolve()
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
