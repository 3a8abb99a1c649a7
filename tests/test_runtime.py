"""The composition root: what the hub and `tidings worker` run, built from Settings and injected parts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from delivery.sandbox_rig import ApnsRig, apns_rig, apns_settings, order_job
from support import ManualClock
from tidings.delivery.queue import QueueOptions
from tidings.delivery.queue.memory import MemoryQueue
from tidings.runtime import Runtime


@pytest.fixture
async def rig(tmp_path: Path, clock: ManualClock) -> AsyncIterator[ApnsRig]:
    async with apns_rig(tmp_path, clock) as r:
        yield r


async def test_in_process_worker_delivers_and_stops(rig: ApnsRig, tmp_path: Path, clock: ManualClock) -> None:
    phone = await rig.register("u1")
    queue = MemoryQueue(QueueOptions(clock=clock))
    runtime = await Runtime.open(apns_settings(rig, tmp_path), queue=queue, devices=rig.store, clock=clock)
    runtime.start_background()  # what the hub does in embedded mode
    running = runtime.worker
    assert running is not None
    try:
        await queue.enqueue(order_job(["u1"]))
        async with asyncio.timeout(10):
            while not await rig.log.query(event_id="ev-1"):
                await asyncio.sleep(0.02)
    finally:
        async with asyncio.timeout(5):
            await runtime.close()
    assert running.task.done() and runtime.worker is None
    [row] = await rig.log.query(event_id="ev-1")
    assert (row.device_id, row.outcome) == (phone.id, "delivered")
    assert "j_complete=1" in repr(running.worker)
    assert await rig.store.list_for_user("u1")  # an injected store's engine is not disposed by the runtime
