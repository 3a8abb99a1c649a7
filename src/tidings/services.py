"""The hub's stateful parts beyond streams: database, device registry, delivery log, push queue, background jobs.

Embedded mode (memory bus, SQLite) runs everything here, in the server process: the schema is upgraded at start,
the push worker and the pruner run as tasks. With Redis, the worker is its own process (`tidings worker`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING

from . import db, metrics
from .config import Settings
from .delivery.log import DeliveryLog
from .delivery.queue import PushJob, Queue, create_queue
from .delivery.service import DEVICE_PRUNE_INTERVAL, RunningWorker, start_in_process_worker
from .errors import BusUnavailable
from .registry.retire import run_pruner
from .registry.store import DeviceStore

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from .events import EventIn

log = logging.getLogger("tidings.hub")

GAUGE_REFRESH = 60.0


class Services:
    """Started by the hub's lifespan; `stop()` releases everything it started."""

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        devices: DeviceStore,
        deliveries: DeliveryLog,
        queue: Queue,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.devices = devices
        self.deliveries = deliveries
        self.queue = queue
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.worker: RunningWorker | None = None
        self._gauges_at = float("-inf")

    @classmethod
    async def start(cls, settings: Settings, *, clock: Callable[[], float]) -> Services:
        url = settings.effective_database_url
        if db.is_sqlite(url):
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = db.create_engine(url)
        if db.is_sqlite(url):
            await db.upgrade(url, engine=engine)  # embedded mode keeps its own schema current
        devices = DeviceStore(engine, clock=clock, ttl_days=settings.device_ttl_days)
        deliveries = DeliveryLog(engine, clock=clock, retention_days=settings.delivery_log_retention_days)
        services = cls(settings, engine, devices, deliveries, create_queue(settings, clock=clock))
        if settings.effective_worker_in_process:
            services._tasks.append(
                asyncio.create_task(run_pruner(devices, DEVICE_PRUNE_INTERVAL, services._stop))
            )
            services.worker = await start_in_process_worker(
                settings, queue=services.queue, devices=devices, log=deliveries, clock=clock
            )
        return services

    async def stop(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
        self._stop.set()
        for task in self._tasks:
            task.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await task
        await self.queue.close()
        await self.engine.dispose()

    async def enqueue_pushes(self, events: Sequence[EventIn], ids: Sequence[str]) -> None:
        for event, event_id in zip(events, ids, strict=True):
            if event.push is None:
                continue
            await self.queue.enqueue(
                PushJob(
                    event_id=event_id,
                    event_type=event.type,
                    audience=event.to.model_dump(),
                    spec=event.push.model_dump(exclude_none=True),
                    data=event.data,
                )
            )

    async def refresh_gauges(self) -> None:
        """Update the gauges that need a query, at most once a minute however often /metrics is scraped."""
        now = time.monotonic()
        if now - self._gauges_at < GAUGE_REFRESH:
            return
        self._gauges_at = now
        try:
            counts = await self.devices.count_active()
        except Exception:  # a scrape must not fail because the database is slow; readiness reports that
            log.warning("devices_active: counting failed", exc_info=True)
            return
        for provider in ("apns", "fcm", "webpush"):
            metrics.devices_active.labels(provider).set(counts.get(provider, 0))

    async def readiness(self) -> dict[str, bool]:
        checks = {"database": await self._database_ok()}
        if self.worker is not None:
            checks["worker"] = not self.worker.task.done()
        else:  # workers are processes of their own: one must have beaten within a visibility timeout
            try:
                checks["worker"] = await self.queue.live_workers(self.settings.push_visibility_timeout) > 0
            except BusUnavailable:
                checks["worker"] = False
        return checks

    async def _database_ok(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
        except Exception:  # any failure means "not ready"; the reason is logged
            log.warning("readiness: database unreachable", exc_info=True)
            return False
        return True
