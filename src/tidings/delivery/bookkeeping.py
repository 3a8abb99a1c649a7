"""Group commit for the worker's bookkeeping: last_used_at updates and delivery-log rows of concurrent jobs are
written together, one UPDATE and one INSERT per flush instead of per job.

Measured on SQLite (embedded mode), a 10-device job spent ~3 ms of CPU on its own two write transactions
against ~1 ms on its sends; batching is the difference between ~120 and several hundred jobs/s per worker.
There is no timer: the first job to arrive starts a flush at once, jobs arriving meanwhile form the next
batch, so an idle worker adds no latency and a busy one batches by itself. Each job waits for its batch to be
written before it is acked, so a crash loses no bookkeeping of acked jobs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from tidings.delivery.dispatch import DeviceSource
from tidings.delivery.log import DeliveryRecord

logger = logging.getLogger("tidings.delivery")

# One UPDATE per 5,000 ids keeps under the drivers' bound-parameter limits (asyncpg and SQLite allow 32,767).
MARK_USED_CHUNK = 5000


class DeliveryRecorder(Protocol):
    async def record(self, rows: Sequence[DeliveryRecord]) -> None: ...


class GroupWriter:
    """`await write(used_ids, rows)` returns once a flush containing them has been written (or has failed,
    which is logged: bookkeeping never fails a job whose pushes went out)."""

    def __init__(self, devices: DeviceSource, log: DeliveryRecorder) -> None:
        self.devices = devices
        self.log = log
        self.flushes = 0
        self._used: list[str] = []
        self._rows: list[DeliveryRecord] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def write(self, used: Sequence[str], rows: Sequence[DeliveryRecord]) -> None:
        if not used and not rows:
            return
        self._used.extend(used)
        self._rows.extend(rows)
        done = asyncio.get_running_loop().create_future()
        self._waiters.append(done)
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._run(), name="tidings-bookkeeping")
        # Shielded: a job cancelled while waiting (worker stop) must not cancel the batch other jobs share.
        await asyncio.shield(done)

    async def _run(self) -> None:
        try:
            while self._waiters:
                used, rows, waiters = self._used, self._rows, self._waiters
                self._used, self._rows, self._waiters = [], [], []
                await self._flush(used, rows)
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
        finally:
            self._flushing = None

    async def _flush(self, used: list[str], rows: list[DeliveryRecord]) -> None:
        self.flushes += 1
        for start in range(0, len(used), MARK_USED_CHUNK):
            chunk = used[start : start + MARK_USED_CHUNK]
            try:
                await self.devices.mark_used(chunk)
            except Exception:  # bookkeeping only: the pushes went out, do not retry them for this
                logger.exception("marking %d devices used failed", len(chunk))
        if rows:
            try:
                await self.log.record(rows)
            except Exception:  # the log is for humans; losing a batch must not resend pushes
                logger.exception("writing %d delivery rows failed", len(rows))

    async def close(self) -> None:
        """Wait for a flush in progress (and the batch queued behind it)."""
        if self._flushing is not None:
            await asyncio.shield(self._flushing)
