"""The worker's lifecycle: graceful stop, hand-back, lease renewal while stopping, broker outages."""

from __future__ import annotations

import asyncio
from typing import Any

from support import ManualClock
from tidings.delivery.queue import QueueOptions
from tidings.delivery.queue.memory import MemoryQueue
from tidings.push.base import Outcome, Result, Target

from .test_worker_unit import Rig, push_job


async def test_stop_returns_jobs_still_running_after_the_grace_period(clock: ManualClock) -> None:
    started = asyncio.Event()

    async def slow(target: Target) -> Result:
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    rig = Rig(clock, {"a1": slow}, burst=False, grace_seconds=0.2, send_timeout=60, poll_seconds=0.05)
    await rig.queue.enqueue(push_job())
    async with asyncio.timeout(10):
        running = asyncio.create_task(rig.worker.run())
        await started.wait()
        await rig.worker.close()
        await running
    stats = await rig.queue.stats()
    assert (stats.ready, stats.in_flight) == (1, 0)  # handed back, not left for the visibility timeout
    assert rig.worker.counters["jobs.returned"] == 1


async def test_stop_lets_quick_jobs_finish(clock: ManualClock) -> None:
    gate = asyncio.Event()

    async def gated(target: Target) -> Result:
        gate.set()
        await asyncio.sleep(0.05)
        return Result(Outcome.delivered)

    rig = Rig(clock, {"a1": gated}, burst=False, grace_seconds=5, poll_seconds=0.05)
    await rig.queue.enqueue(push_job())
    async with asyncio.timeout(10):
        running = asyncio.create_task(rig.worker.run())
        await gate.wait()
        rig.worker.stop()
        await running
    assert rig.worker.counters["jobs.complete"] == 1 and await rig.queue.depth() == 0


class FlakyQueue(MemoryQueue):
    """A memory queue whose first reserves fail the way a Redis outage does."""

    def __init__(self, failures: int, **kw: Any) -> None:
        super().__init__(**kw)
        self.failures = failures

    async def reserve(self, consumer: str, count: int = 1, block_seconds: float = 1.0) -> list[Any]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("Connection refused")
        return await super().reserve(consumer, count, block_seconds)


async def test_worker_survives_a_broker_outage(clock: ManualClock) -> None:
    rig = Rig(clock)
    rig.queue = FlakyQueue(2, options=QueueOptions(visibility_timeout=30, clock=clock))
    rig.worker.queue = rig.queue
    rig.worker._backoff = 0.01
    await rig.run(push_job())
    assert rig.worker.counters["reserve.errors"] == 2 and rig.worker.counters["jobs.complete"] == 1


class WatchedQueue(MemoryQueue):
    """Says when a worker is waiting inside `reserve`."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.waiting = asyncio.Event()

    async def reserve(self, consumer: str, count: int = 1, block_seconds: float = 1.0) -> list[Any]:
        self.waiting.set()
        return await super().reserve(consumer, count, block_seconds)


async def test_stop_is_immediate_on_an_idle_memory_queue(clock: ManualClock) -> None:
    rig = Rig(clock, burst=False, poll_seconds=30)
    rig.queue = rig.worker.queue = WatchedQueue(options=QueueOptions(visibility_timeout=30, clock=clock))
    running = asyncio.create_task(rig.worker.run())
    async with asyncio.timeout(5):
        await rig.queue.waiting.wait()  # blocked in reserve
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(5):
        await rig.worker.close()
        await running
    assert loop.time() - started < 0.5  # not the 30 s poll


async def test_leases_are_renewed_while_stopping_gracefully(clock: ManualClock) -> None:
    gate = asyncio.Event()

    async def slow(target: Target) -> Result:
        gate.set()
        await asyncio.sleep(0.8)  # longer than the 0.3 s visibility timeout
        return Result(Outcome.delivered)

    rig = Rig(clock, {"a1": slow}, burst=False, grace_seconds=5, heartbeat_seconds=0.1, poll_seconds=0.05)
    rig.queue = MemoryQueue(QueueOptions(visibility_timeout=0.3, clock=clock))
    rig.worker.queue = rig.queue
    await rig.queue.enqueue(push_job())
    async with asyncio.timeout(10):
        running = asyncio.create_task(rig.worker.run())
        await gate.wait()
        rig.worker.stop()
        await asyncio.sleep(0.5)
        assert await rig.queue.reserve("another-worker", block_seconds=0) == []  # still ours
        await running
    assert rig.worker.counters["jobs.complete"] == 1 and await rig.queue.depth() == 0
