"""Building the push worker from Settings, and running it as a task of a process.

The in-process worker (embedded mode) and `tidings worker` both come through `worker_from_settings`, so they
cannot drift apart in concurrency, attempts, lease renewal or grace period. What the worker works with (queue,
device store, log, providers) is built by the composition root, `tidings.runtime`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

from ..clock import Clock, system_clock
from ..config import Settings
from ..push.base import Provider
from .bookkeeping import DeliveryRecorder
from .dispatch import Badges, DeviceSource
from .gate import Gate
from .queue import Queue
from .worker import Worker


def worker_from_settings(
    settings: Settings,
    *,
    queue: Queue,
    devices: DeviceSource,
    log: DeliveryRecorder,
    providers: Mapping[str, Provider],
    clock: Clock = system_clock,
    burst: bool = False,
    handle_signals: bool = False,
    gate: Gate | None = None,
    badges: Badges | None = None,
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
        gate=gate,
        badges=badges,
    )


@dataclass
class RunningWorker:
    """A worker running as a task of this process; `await stop()` finishes or hands back its jobs."""

    worker: Worker
    task: asyncio.Task[None]

    @classmethod
    def start(cls, worker: Worker) -> RunningWorker:
        return cls(worker, asyncio.create_task(worker.run(), name="tidings-push-worker"))

    async def stop(self) -> None:
        self.worker.stop()
        with contextlib.suppress(Exception):
            await self.task
