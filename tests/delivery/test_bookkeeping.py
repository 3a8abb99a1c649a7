"""Group commit of last_used_at and delivery-log rows across concurrent jobs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from tidings.delivery.bookkeeping import GroupWriter
from tidings.delivery.log import DeliveryRecord

from .fakes import FakeLog, FakeStore


def row(i: int) -> DeliveryRecord:
    return DeliveryRecord(f"ev-{i}", f"d{i}", "u1", "apns", "delivered", "", 200, 1, 1.0, 0.0)


class SlowStore(FakeStore):
    """mark_used takes a while, like a database round trip, so writes pile up behind a flush."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = asyncio.Event()  # set while a mark_used is in progress

    async def mark_used(self, ids: Sequence[str]) -> None:
        self.inside.set()
        await asyncio.sleep(0.02)
        self.inside.clear()
        await super().mark_used(ids)


async def test_concurrent_writes_share_flushes_and_each_waits_for_its_own() -> None:
    store, log = SlowStore(), FakeLog()
    writer = GroupWriter(store, log)
    async with asyncio.timeout(5):
        await asyncio.gather(*(writer.write([f"d{i}"], [row(i)]) for i in range(50)))
    assert sorted(i for ids in store.used for i in ids) == sorted(f"d{i}" for i in range(50))
    assert len(log.rows) == 50
    assert writer.flushes == 1  # all 50 arrived before the flush task first ran
    assert len(log.batches) == 1 and len(store.used) == 1
    # Writes arriving while a flush is in progress form the next batch, not one flush each.
    first = asyncio.create_task(writer.write(["a"], [row(100)]))
    async with asyncio.timeout(5):
        await store.inside.wait()  # that flush is now inside its (slow) mark_used
        await asyncio.gather(first, *(writer.write([f"b{i}"], [row(200 + i)]) for i in range(20)))
    assert writer.flushes == 3 and [len(b) for b in log.batches[1:]] == [1, 20]


async def test_an_idle_writer_flushes_at_once() -> None:
    store, log = FakeStore(), FakeLog()
    writer = GroupWriter(store, log)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await writer.write(["d1"], [row(1)])
    assert loop.time() - started < 0.05 and store.used == [["d1"]] and len(log.rows) == 1


async def test_failing_bookkeeping_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(FakeStore):
        async def mark_used(self, ids: Sequence[str]) -> None:
            raise ConnectionError("database is down")

    log = FakeLog()
    await GroupWriter(Broken(), log).write(["d1"], [row(1)])
    assert len(log.rows) == 1  # the log still got its rows
    assert "marking 1 devices used failed" in caplog.text


async def test_a_cancelled_job_does_not_cancel_the_shared_batch() -> None:
    store, log = SlowStore(), FakeLog()
    writer = GroupWriter(store, log)
    first = asyncio.create_task(writer.write(["d1"], [row(1)]))
    await asyncio.sleep(0)
    second = asyncio.create_task(writer.write(["d2"], [row(2)]))
    third = asyncio.create_task(writer.write(["d3"], [row(3)]))
    await asyncio.sleep(0)
    second.cancel()
    async with asyncio.timeout(5):
        await first
        await third
        await writer.close()
    assert sorted(i for ids in store.used for i in ids) == ["d1", "d2", "d3"]
