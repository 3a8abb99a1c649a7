"""The worker's checkpoints: a redelivered job skips the devices already answered and books their answers from
the checkpoint, checkpoints are written in batches while the database is written once per job, and a job handed
back at shutdown is narrowed to what is left (fakes, memory queue; test_worker_kill.py runs the same on real
processes, Redis and the APNs sandbox)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from support import ManualClock
from tidings.delivery.dispatch import Attempt
from tidings.delivery.progress import attempt_of, record_of
from tidings.delivery.queue import Lease, QueueOptions
from tidings.delivery.queue.memory import MemoryQueue
from tidings.push.base import Outcome, Result, Target

from .fakes import FakeDevice, FakeStore
from .test_worker_unit import DEVICES, Rig, push_job

ALL = {d.id for d in DEVICES}
DELIVERED = "delivered|200||"


class WatchedQueue(MemoryQueue):
    """Keeps every checkpoint write; `fail` makes them raise the way a Redis outage does."""

    def __init__(self, fail: bool = False, **kw: Any) -> None:
        super().__init__(**kw)
        self.fail = fail
        self.writes: list[dict[str, str]] = []
        self.written = asyncio.Event()

    async def checkpoint(self, lease: Lease, answers: Mapping[str, str]) -> None:
        if self.fail:
            raise ConnectionError("redis went away")
        self.writes.append(dict(answers))
        await super().checkpoint(lease, answers)
        self.written.set()


def watched(rig: Rig, *, fail: bool = False) -> WatchedQueue:
    queue = WatchedQueue(fail, options=QueueOptions(visibility_timeout=30, clock=rig.clock))
    rig.queue = rig.worker.queue = queue
    return queue


def many_devices(rig: Rig, n: int) -> list[FakeDevice]:
    many = [FakeDevice(f"d{i}", "u9", "apns", f"t{i}") for i in range(n)]
    rig.store = rig.worker.dispatcher.devices = rig.worker.writer.devices = FakeStore(many)
    return many


async def die_after_answers(rig: Rig, answered: Mapping[str, str], **job: Any) -> None:
    """A worker took the job, checkpointed `answered`, and died: its lease is expired, ready for a reclaim."""
    await rig.queue.enqueue(push_job(**job))
    [lease] = await rig.queue.reserve("died", block_seconds=0.1)
    await rig.queue.checkpoint(lease, answered)
    rig.clock.advance(31)  # past the visibility timeout


def rows_by_device(rig: Rig) -> dict[str, tuple[str, str, float | None]]:
    return {r.device_id or "-": (r.outcome, r.reason, r.latency_ms) for r in rig.log.rows}


async def test_a_redelivered_job_skips_the_answered_devices_and_books_them_from_the_checkpoint(
    clock: ManualClock,
) -> None:
    rig = Rig(clock)
    await die_after_answers(rig, {"d-apns-1": DELIVERED, "d-fcm-1": "rejected|400||INVALID_ARGUMENT"})
    await rig.run()
    assert rig.providers["apns"].sent == ["a2"] and rig.providers["fcm"].sent == []
    assert rig.providers["webpush"].sent == ["https://push.example/w1"]
    rows = rows_by_device(rig)
    assert set(rows) == ALL and len(rig.log.rows) == 4  # each device logged once, in one insert
    assert rows["d-apns-1"] == ("delivered", "", None)  # the dead worker's answer; its latency is unknown
    assert rows["d-fcm-1"] == ("rejected", "INVALID_ARGUMENT", None)
    assert rows["d-apns-2"][0] == "delivered" and rows["d-apns-2"][2] is not None
    assert sorted(rig.store.used[0]) == ["d-apns-1", "d-apns-2", "d-web-1"]
    assert rig.worker.counters["checkpoint.skipped"] == 2 and "answered_skipped=2" in repr(rig.worker)
    assert rig.worker.counters["jobs.complete"] == 1 and await rig.queue.depth() == 0


async def test_a_dead_token_in_the_checkpoint_is_disabled_by_the_reclaiming_worker(
    clock: ManualClock,
) -> None:
    rig = Rig(clock)
    sent_at = clock() - 5
    await die_after_answers(rig, {"d-apns-2": f"dead_token|410|{sent_at!r}|Unregistered"})
    await rig.run()
    assert "a2" not in rig.providers["apns"].sent
    assert rig.store.disabled == [("apns", "a2", "Unregistered")]
    assert rig.store.seen_before == [sent_at]  # the send's time, as the dead worker would have passed it


async def test_a_redelivered_job_answered_in_full_is_booked_not_called_nobody(clock: ManualClock) -> None:
    rig = Rig(clock)
    await die_after_answers(rig, dict.fromkeys(ALL, DELIVERED))
    await rig.run()
    assert all(p.sent == [] for p in rig.providers.values())
    assert {k: v[0] for k, v in rows_by_device(rig).items()} == dict.fromkeys(ALL, "delivered")
    assert rig.worker.counters["jobs.complete"] == 1 and await rig.queue.depth() == 0


async def test_a_redelivered_narrowed_retry_sends_only_its_unanswered_devices(clock: ManualClock) -> None:
    rig = Rig(clock, {"a2": Result(Outcome.retry_later, "ServiceUnavailable", status=503)})
    # Attempt 2 was for three devices; d-apns-1 had answered before its worker died.
    narrowed = ("d-apns-1", "d-apns-2", "d-fcm-1")
    await die_after_answers(rig, {"d-apns-1": DELIVERED}, attempt=2, device_ids=narrowed)
    await rig.run()
    assert rig.providers["apns"].sent == ["a2"] and rig.providers["fcm"].sent == ["f1"]
    assert {r.attempt for r in rig.log.rows} == {2} and len(rig.log.rows) == 3
    clock.advance(3600)
    [lease] = await rig.queue.reserve("peek", block_seconds=0.1)
    assert (lease.job.attempt, lease.job.device_ids) == (3, ("d-apns-2",))  # the retry narrows further
    assert await rig.queue.answered(lease) == {}  # and starts with a checkpoint of its own


async def test_answers_are_checkpointed_in_batches_and_the_log_written_once(clock: ManualClock) -> None:
    rig = Rig(
        clock,
        {"t7": Result(Outcome.retry_later, "ServiceUnavailable", status=503)},
        checkpoint_every=3,
        checkpoint_seconds=3600,  # only the count starts a write here
    )
    many = many_devices(rig, 20)
    queue = watched(rig)
    await rig.run(push_job(("u9",)))
    # The budget: at most one write per `checkpoint_every` final answers (19 here), never one per send.
    assert 1 <= len(queue.writes) <= 19 // 3 and all(len(w) >= 3 for w in queue.writes)
    checkpointed = [i for w in queue.writes for i in w]
    assert len(checkpointed) == len(set(checkpointed)) and "d7" not in checkpointed  # retry_later: a send
    assert all(w[i] == DELIVERED for w in queue.writes for i in w)
    assert len(rig.log.batches) == 1 and len(rig.log.rows) == len(many)  # the database: once per job
    assert rig.worker.counters["checkpoint.writes"] == len(queue.writes)
    assert f"checkpoints={len(queue.writes)}" in repr(rig.worker)


async def test_a_small_job_writes_no_checkpoint(clock: ManualClock) -> None:
    rig = Rig(clock, checkpoint_seconds=3600)  # 4 answers, fewer than checkpoint_every
    queue = watched(rig)
    await rig.run(push_job())
    assert queue.writes == [] and len(rig.log.batches) == 1


async def test_a_stalled_job_checkpoints_its_answers_after_checkpoint_seconds(clock: ManualClock) -> None:
    release = asyncio.Event()

    async def stalls(target: Target) -> Result:
        await release.wait()
        return Result(Outcome.delivered)

    rig = Rig(clock, {"a2": stalls}, checkpoint_seconds=0.02, send_timeout=60)
    queue = watched(rig)
    await queue.enqueue(push_job())
    async with asyncio.timeout(10):
        running = asyncio.create_task(rig.worker.run())
        await queue.written.wait()
        release.set()
        await running
    assert set(queue.writes[0]) == ALL - {"d-apns-2"}
    assert set(rows_by_device(rig)) == ALL


async def test_a_job_handed_back_at_shutdown_keeps_only_the_devices_not_answered(clock: ManualClock) -> None:
    started = asyncio.Event()

    async def hangs(target: Target) -> Result:
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    rig = Rig(
        clock,
        {"a2": hangs, "f1": Result(Outcome.retry_later, "UNAVAILABLE", status=503)},
        burst=False,
        grace_seconds=0.05,
        poll_seconds=0.05,
        send_timeout=60,
        checkpoint_seconds=3600,  # nothing checkpointed: the hand-back narrows by what this worker knows
    )
    queue = watched(rig)
    await queue.enqueue(push_job())
    async with asyncio.timeout(10):
        running = asyncio.create_task(rig.worker.run())
        await started.wait()
        while len(rig.providers["fcm"].sent) + len(rig.providers["webpush"].sent) < 2:
            await asyncio.sleep(0.005)
        await rig.worker.close()
        await running
    assert rig.worker.counters["jobs.returned"] == 1 and queue.writes == []
    [lease] = await queue.reserve("next", block_seconds=0.1)
    assert lease.job.attempt == 1 and sorted(lease.job.device_ids or ()) == ["d-apns-2", "d-fcm-1"]
    # What it got is booked before it goes: the delivered and the retry_later (the row of attempt 1).
    assert {k: v[0] for k, v in rows_by_device(rig).items()} == {
        "d-apns-1": "delivered",
        "d-web-1": "delivered",
        "d-fcm-1": "retry_later",
    }


async def test_a_failing_checkpoint_costs_nothing_but_the_checkpoint(clock: ManualClock) -> None:
    rig = Rig(clock, checkpoint_every=3, checkpoint_seconds=3600)
    many_devices(rig, 10)
    watched(rig, fail=True)
    await rig.run(push_job(("u9",)))
    assert rig.worker.counters["checkpoint.errors"] >= 1 and rig.worker.counters["checkpoint.writes"] == 0
    assert rig.worker.counters["jobs.complete"] == 1 and len(rig.log.rows) == 10
    assert await rig.queue.depth() == 0


@pytest.mark.parametrize(
    "result, sent_at",
    [
        (Result(Outcome.delivered, status=200), 1.5),
        (Result(Outcome.dead_token, "Unregistered", status=410), 1_700_000_000.25),
        (Result(Outcome.rejected, 'BadTopic: "a|b"', status=400), None),
        (Result(Outcome.skipped, "not_configured"), None),
    ],
)
def test_a_checkpoint_record_carries_what_the_bookkeeping_needs(
    result: Result, sent_at: float | None
) -> None:
    device = DEVICES[0]
    back = attempt_of(device, record_of(Attempt(device, result, 12.5, sent_at)))
    assert back is not None
    assert (back.result.outcome, back.result.reason, back.result.status) == (
        result.outcome,
        result.reason,
        result.status,
    )
    assert back.sent_at == (sent_at if result.outcome is Outcome.dead_token else None)
    assert back.device is device and back.latency_ms is None


def test_a_checkpoint_record_this_version_cannot_read_means_send_again() -> None:
    assert attempt_of(DEVICES[0], "delivered") is None
    assert attempt_of(DEVICES[0], "teleported|200||") is None
