"""Retirement: the periodic job that deletes stale and long-disabled devices (DeviceStore.prune on a timer).

Runs in the server process in embedded mode and in the worker otherwise. A failing database must not kill the
job: the error is logged and the next round tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tidings.registry.store import DeviceStore, PruneReport

__all__ = ["prune_once", "run_pruner"]

log = logging.getLogger("tidings.registry.retire")


async def prune_once(store: DeviceStore) -> PruneReport:
    report = await store.prune()
    log.info(
        "pruned %d devices (%d not seen for %d days, %d disabled)",
        report.total,
        report.stale,
        store.ttl_days,
        report.disabled,
        extra={"pruned": report.total, "stale": report.stale, "disabled": report.disabled},
    )
    return report


async def run_pruner(store: DeviceStore, interval: float, stop_event: asyncio.Event) -> None:
    """Prune now, then every `interval` seconds, until `stop_event` is set."""
    while not stop_event.is_set():
        try:
            await prune_once(store)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("device pruning failed; retrying in %.0f s", interval)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), timeout=interval)
