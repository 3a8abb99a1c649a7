"""The worker's checkpoints: a redelivered job skips the devices already answered, checkpoints are written in
batches after their rows, and a job handed back at shutdown is narrowed to what is left (fakes, memory queue;
test_worker_kill.py runs the same on real processes, Redis and the APNs sandbox)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from support import ManualClock
from tidings.delivery.log import DeliveryRecord
from tidings.delivery.queue import Lease, QueueOptions
from tidings.delivery.queue.memory import MemoryQueue
from tidings.push.base import Outcome, Result, Target

from .fakes import FakeDevice, FakeLog, FakeStore
from .test_worker_unit import Rig, push_job

ALL = {"d-apns-1", "d-apns-2", "d-fcm-1", "d-web-1"}


class Journal:
    """What happened, in order: ("rows", device ids) when a log batch is written, ("checkpoint", ids)."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, list[str]]] = []

    def of(self, kind: str) -> list[list[str]]:
        return [ids for k, ids in self.entries if k == kind]


class JournalQueue(MemoryQueue):
    def __init__(self, journal: Journal, fail: bool = False, **kw: Any) -> None:
        super().__init__(**kw)
        self.journal = journal
        self.fail = fail
        self.checkpointed = asyncio.Event()

    async def checkpoint(self, lease: Lease, device_ids: Sequence[str]) -> None:
        if self.fail:
            raise ConnectionError("redis went away")
        self.journal.entries.append(("checkpoint", list(device_ids)))
        await super().checkpoint(lease, device_ids)
        self.checkpointed.set()


class JournalLog(FakeLog):
    journal: Journal

    async def record(self, rows: Sequence[DeliveryRecord]) -> None:
        self.journal.entries.append(("rows", [r.device_id or "-" for r in rows]))
        await super().record(rows)


def journaled(rig: Rig, *, fail: bool = False) -> Journal:
    journal = Journal()
    queue = JournalQueue(journal, fail, options=QueueOptions(visibility_timeout=30, clock=rig.clock))
    rig.queue = rig.worker.queue = queue
    log = JournalLog()
    log.journal = journal
    rig.log = rig.worker.writer.log = log
    return journal


async def die_after_answers(rig: Rig, answered: list[str], **job: Any) -> Lease:
    """A worker took the job, checkpointed `answered`, and died: its lease is expired, ready for a reclaim."""
    await rig.queue.enqueue(push_job(**job))
    [lease] = await rig.queue.reserve("died", block_seconds=0.1)
    await rig.queue.checkpoint(lease, answered)
    rig.clock.advance(31)  # past the visibility timeout
    return lease


async def test_a_redelivered_job_skips_the_devices_answered_before_its_worker_died(
    clock: ManualClock,
) -> None:
    rig = Rig(clock)
    await die_after_answers(rig, ["d-apns-1", "d-fcm-1"])
    await rig.run()
    assert rig.providers["apns"].sent == ["a2"] and rig.providers["fcm"].sent == []
    assert rig.providers["webpush"].sent == ["https://push.example/w1"]
    assert sorted(r.device_id or "-" for r in rig.log.rows) == ["d-apns-2", "d-web-1"]
    assert rig.worker.counters["checkpoint.skipped"] == 2 and "answered_skipped=2" in repr(rig.worker)
    assert rig.worker.counters["jobs.complete"] == 1 and await rig.queue.depth() == 0


async def test_a_redelivered_job_answered_in_full_is_acked_without_a_nobody_row(clock: ManualClock) -> None:
    rig = Rig(clock)
    await die_after_answers(rig, sorted(ALL))
    await rig.run()
    assert all(p.sent == [] for p in rig.providers.values())
    assert rig.log.rows == []  # not "no_active_devices": they were answered, by the worker that died
    assert rig.worker.counters["jobs.complete"] == 1 and await rig.queue.depth() == 0


async def test_a_redelivered_narrowed_retry_sends_only_its_unanswered_devices(clock: ManualClock) -> None:
    rig = Rig(clock, {"a2": Result(Outcome.retry_later, "ServiceUnavailable", status=503)})
    # Attempt 2 was for three devices; d-apns-1 had answered before its worker died.
    narrowed = ("d-apns-1", "d-apns-2", "d-fcm-1")
    await die_after_answers(rig, ["d-apns-1"], attempt=2, device_ids=narrowed)
    await rig.run()
    assert rig.providers["apns"].sent == ["a2"] and rig.providers["fcm"].sent == ["f1"]
    clock.advance(3600)
    [lease] = await rig.queue.reserve("peek", block_seconds=0.1)
    assert (lease.job.attempt, lease.job.device_ids) == (3, ("d-apns-2",))  # the retry narrows further
    assert await rig.queue.answered(lease) == frozenset()  # and starts with a checkpoint of its own


async def test_answers_are_checkpointed_in_batches_each_after_its_rows(clock: ManualClock) -> None:
    many = [FakeDevice(f"d{i}", "u9", "apns", f"t{i}") for i in range(10)]
    rig = Rig(
        clock,
        {"t7": Result(Outcome.retry_later, "ServiceUnavailable", status=503)},
        checkpoint_every=3,
        checkpoint_seconds=3600,  # only the count starts a flush here
    )
    rig.store = rig.worker.dispatcher.devices = rig.worker.writer.devices = FakeStore(many)
    journal = journaled(rig)
    await rig.run(push_job(("u9",)))
    checkpoints = journal.of("checkpoint")
    # The budget: never more than one write per `checkpoint_every` answers, never one per send.
    assert 1 <= len(checkpoints) <= 10 // 3 and all(len(ids) >= 2 for ids in checkpoints)
    written: set[str] = set()
    for kind, ids in journal.entries:
        if kind == "rows":
            written.update(ids)
        else:
            assert set(ids) <= written  # a checkpoint never runs ahead of the delivery log
    assert "d7" not in {i for ids in checkpoints for i in ids}  # retry_later still needs a send
    assert sorted(written) == sorted(d.id for d in many)  # every answer logged exactly once
    assert len(rig.log.rows) == 10
    assert rig.worker.counters["checkpoint.writes"] == len(checkpoints)


async def test_a_small_job_writes_no_checkpoint(clock: ManualClock) -> None:
    rig = Rig(clock, checkpoint_seconds=3600)  # 4 answers, fewer than checkpoint_every (256)
    journal = journaled(rig)
    await rig.run(push_job())
    assert journal.of("checkpoint") == [] and len(journal.of("rows")) == 1  # one insert per job, as before


async def test_a_stalled_job_checkpoints_its_answers_after_checkpoint_seconds(clock: ManualClock) -> None:
    release = asyncio.Event()

    async def stalls(target: Target) -> Result:
        await release.wait()
        return Result(Outcome.delivered)

    rig = Rig(clock, {"a2": stalls}, checkpoint_seconds=0.02, send_timeout=60)
    journal = journaled(rig)
    assert isinstance(rig.queue, JournalQueue)
    await rig.queue.enqueue(push_job())
    async with asyncio.timeout(10):
        running = asyncio.create_task(rig.worker.run())
        await rig.queue.checkpointed.wait()
        release.set()
        await running
    assert sorted(journal.of("checkpoint")[0]) == sorted(ALL - {"d-apns-2"})
    assert sorted(r.device_id or "-" for r in rig.log.rows) == sorted(ALL)


async def test_a_job_handed_back_at_shutdown_keeps_only_the_devices_not_checkpointed(
    clock: ManualClock,
) -> None:
    async def hangs(target: Target) -> Result:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    rig = Rig(
        clock,
        {"a2": hangs},
        burst=False,
        grace_seconds=0.05,
        poll_seconds=0.05,
        send_timeout=60,
        checkpoint_seconds=0.02,
    )
    journaled(rig)
    assert isinstance(rig.queue, JournalQueue)
    await rig.queue.enqueue(push_job())
    async with asyncio.timeout(10):
        running = asyncio.create_task(rig.worker.run())
        await rig.queue.checkpointed.wait()
        await rig.worker.close()
        await running
    assert rig.worker.counters["jobs.returned"] == 1
    [lease] = await rig.queue.reserve("next", block_seconds=0.1)
    assert (lease.job.attempt, lease.job.device_ids) == (1, ("d-apns-2",))
    assert sorted(r.device_id or "-" for r in rig.log.rows) == sorted(ALL - {"d-apns-2"})


async def test_a_failing_checkpoint_costs_nothing_but_the_checkpoint(clock: ManualClock) -> None:
    many = [FakeDevice(f"d{i}", "u9", "apns", f"t{i}") for i in range(10)]
    rig = Rig(clock, checkpoint_every=3, checkpoint_seconds=3600)
    rig.store = rig.worker.dispatcher.devices = rig.worker.writer.devices = FakeStore(many)
    journaled(rig, fail=True)
    await rig.run(push_job(("u9",)))
    assert rig.worker.counters["checkpoint.errors"] >= 1 and rig.worker.counters["checkpoint.writes"] == 0
    assert rig.worker.counters["jobs.complete"] == 1 and len(rig.log.rows) == 10
    assert await rig.queue.depth() == 0
