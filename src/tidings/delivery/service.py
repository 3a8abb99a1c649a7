"""Running the worker: inside the server in embedded mode, or as its own process (`tidings worker`).

Both build the Worker from Settings the same way (`worker_from_settings`), so the in-process worker and the
worker process cannot drift apart in concurrency, attempts, visibility renewal or grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tidings.delivery.bookkeeping import DeliveryRecorder
from tidings.delivery.dispatch import DeviceSource
from tidings.delivery.log import DeliveryLog
from tidings.delivery.queue import Queue, create_queue
from tidings.delivery.worker import Worker
from tidings.errors import TidingsError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from tidings.config import Settings
    from tidings.push.base import Provider

logger = logging.getLogger("tidings.delivery")

LOG_PRUNE_INTERVAL = 3600.0
DEVICE_PRUNE_INTERVAL = 3600.0


def worker_from_settings(
    settings: Settings,
    *,
    queue: Queue,
    devices: DeviceSource,
    log: DeliveryRecorder,
    providers: Mapping[str, Provider],
    clock: Callable[[], float] = time.time,
    burst: bool = False,
    handle_signals: bool = False,
) -> Worker:
    return Worker(
        queue=queue,
        devices=devices,
        providers=providers,
        log=log,
        concurrency=settings.worker_concurrency,
        max_attempts=settings.push_max_attempts,
        clock=clock,
        burst=burst,
        # Renew leases three times per visibility timeout: one slow Redis round trip cannot cost a lease.
        heartbeat_seconds=max(0.05, settings.push_visibility_timeout / 3),
        grace_seconds=settings.shutdown_grace_seconds,
        poll_seconds=min(1.0, settings.push_visibility_timeout / 2),
        handle_signals=handle_signals,
    )


def build_providers(settings: Settings, clock: Callable[[], float]) -> dict[str, Provider]:
    """The configured providers; start-up says once what each unconfigured one is missing."""
    from tidings.push import build_providers as build

    providers = build(settings, clock=clock)
    for name, provider in providers.items():
        if not provider.configured:
            logger.warning(
                "push provider %s not configured (%s): its deliveries are skipped", name, provider.missing
            )
    return providers


async def prune_log_forever(log: DeliveryLog, every: float = LOG_PRUNE_INTERVAL) -> None:
    """Drop delivery rows past the retention period, hourly (idempotent: several workers may all run it)."""
    while True:
        try:
            removed = await log.prune()
            if removed:
                logger.info("pruned %d delivery log rows", removed)
        except Exception:
            logger.exception("pruning the delivery log failed")
        await asyncio.sleep(every)


@dataclass
class RunningWorker:
    """A worker running as a task of this process; `await stop()` finishes or hands back its jobs."""

    worker: Worker
    task: asyncio.Task[None]
    owned_providers: list[Provider] = field(default_factory=list)
    helpers: list[asyncio.Task[None]] = field(default_factory=list)

    async def stop(self) -> None:
        self.worker.stop()
        with contextlib.suppress(Exception):
            await self.task
        for helper in self.helpers:
            helper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await helper
        for provider in self.owned_providers:
            with contextlib.suppress(Exception):
                await provider.aclose()


async def start_in_process_worker(
    settings: Settings,
    *,
    queue: Queue,
    devices: DeviceSource,
    log: DeliveryLog,
    clock: Callable[[], float] = time.time,
    providers: Mapping[str, Provider] | None = None,
) -> RunningWorker:
    """Embedded mode: the worker as a task of the server. Providers are built from settings unless given
    (then the caller closes them); the delivery log is pruned hourly alongside."""
    owned: list[Provider] = []
    if providers is None:
        providers = build_providers(settings, clock)
        owned = list(providers.values())
    worker = worker_from_settings(
        settings, queue=queue, devices=devices, log=log, providers=providers, clock=clock
    )
    task = asyncio.create_task(worker.run(), name="tidings-push-worker")
    helpers = [asyncio.create_task(prune_log_forever(log), name="tidings-delivery-log-pruner")]
    return RunningWorker(worker, task, owned, helpers)


class SchemaNotReady(TidingsError):
    """The database is not at the newest migration; the worker would fail every job."""


async def _require_schema(engine: AsyncEngine) -> None:
    # Fail at start with the fix, rather than retry and dead-letter every job on "no such table".
    from tidings import db

    url = engine.url.render_as_string(hide_password=False)
    current, head = await db.current(url, engine=engine), db.head_revision()
    if current != head:
        raise SchemaNotReady(
            f"the database schema is at {current or 'nothing'}, the worker needs {head}: "
            "run `tidings db upgrade` (or start `tidings serve` once with SQLite)"
        )


async def run_worker_process(
    settings: Settings, *, burst: bool = False, clock: Callable[[], float] = time.time
) -> Worker:
    """`tidings worker`: its own engine, registry, log, queue and providers; SIGTERM/SIGINT stop it."""
    from tidings import db
    from tidings.registry.retire import run_pruner
    from tidings.registry.store import DeviceStore

    engine = db.create_engine(settings.effective_database_url)
    try:
        await _require_schema(engine)
    except BaseException:
        await engine.dispose()
        raise
    queue = create_queue(settings, clock=clock)
    providers = build_providers(settings, clock)
    log = DeliveryLog(engine, clock=clock, retention_days=settings.delivery_log_retention_days)
    devices = DeviceStore(engine, clock=clock, ttl_days=settings.device_ttl_days)
    stop_pruning = asyncio.Event()
    # Worker processes own the periodic jobs in Redis mode (the server runs them itself only in embedded mode).
    pruners = [
        asyncio.create_task(prune_log_forever(log), name="tidings-delivery-log-pruner"),
        asyncio.create_task(
            run_pruner(devices, DEVICE_PRUNE_INTERVAL, stop_pruning), name="tidings-device-pruner"
        ),
    ]
    try:
        worker = worker_from_settings(
            settings,
            queue=queue,
            devices=devices,
            log=log,
            providers=providers,
            clock=clock,
            burst=burst,
            handle_signals=True,
        )
        logger.info("worker %s started on %s", worker.consumer, queue)
        await worker.run()
        logger.info("worker stopped: %r", worker)
        return worker
    finally:
        stop_pruning.set()
        for pruner in pruners:
            pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pruner
        for provider in providers.values():
            with contextlib.suppress(Exception):
                await provider.aclose()
        await queue.close()
        await engine.dispose()
