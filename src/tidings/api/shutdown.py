"""Drain streams when the process is told to stop.

uvicorn runs the lifespan shutdown only after every connection has closed, and SSE connections never close on
their own, so the drain must start from the signal, not from the lifespan (DESIGN §6). We chain onto whatever
handler the server installed: ours starts the drain, then the server's begins its own shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..hub import Hub

log = logging.getLogger("tidings.hub")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def install_drain_on_signals(hub: Hub) -> Callable[[], None] | None:
    """Chain a drain onto SIGTERM/SIGINT; returns a function restoring the previous handlers."""
    try:
        loop = asyncio.get_running_loop()
        previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    except (RuntimeError, ValueError):
        return None

    def handler(signum: int, frame: FrameType | None) -> None:
        if not hub.draining:
            log.info("signal %s: draining streams", signal.Signals(signum).name)
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(hub.drain()))
        chained: Any = previous.get(signal.Signals(signum))
        if callable(chained):
            chained(signum, frame)
        elif chained == signal.SIG_DFL and signum == signal.SIGINT:
            raise KeyboardInterrupt

    try:
        for sig in SIGNALS:
            signal.signal(sig, handler)
    except ValueError:  # not the main thread (e.g. a test client's thread): leave signals alone
        return None

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


@asynccontextmanager
async def drain_on_signals(hub: Hub, *, enabled: bool = True) -> AsyncIterator[None]:
    """While inside, SIGTERM/SIGINT start the hub's drain before the server's own handler runs."""
    restore = install_drain_on_signals(hub) if enabled else None
    try:
        yield
    finally:
        if restore is not None:
            restore()
