"""The worker's decisions, with fakes of the registry and providers (the sandbox tests cover real parts)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest

from support import ManualClock
from tidings.delivery.queue import PushJob, QueueOptions
from tidings.delivery.queue.memory import MemoryQueue
from tidings.delivery.retry import RetryPolicy
from tidings.delivery.worker import Worker
from tidings.push.base import Outcome, Result, Target

from .fakes import FakeDevice, FakeLog, FakeProvider, FakeStore

DEVICES = [
    FakeDevice("d-apns-1", "u1", "apns", "a1"),
    FakeDevice("d-apns-2", "u1", "apns", "a2"),
    FakeDevice("d-fcm-1", "u1", "fcm", "f1"),
    FakeDevice("d-web-1", "u2", "webpush", "https://push.example/w1"),
]


def push_job(users: Sequence[str] = ("u1", "u2"), **kw: Any) -> PushJob:
    return PushJob(
        event_id=kw.pop("event_id", "ev-1"),
        event_type="order.created",
        audience={"users": list(users), "roles": [], "topics": [], "broadcast": False},
        spec={"mode": "silent"},
        data={"order_id": "o-7"},
        **kw,
    )


class Rig:
    def __init__(self, clock: ManualClock, answers: dict[str, Any] | None = None, **worker_kw: Any) -> None:
        self.clock = clock
        self.queue = MemoryQueue(QueueOptions(visibility_timeout=30, clock=clock))
        self.store = FakeStore(DEVICES)
        answers = answers or {}
        self.providers = {n: FakeProvider(n, answers) for n in ("apns", "fcm", "webpush")}
        self.log = FakeLog()
        kw: dict[str, Any] = {
            "concurrency": 4,
            "max_attempts": 3,
            "burst": True,
            "send_timeout": 2.0,
            "retry_policy": RetryPolicy(max_attempts=3, random=lambda: 0.5),
        }
        kw.update(worker_kw)
        self.worker = Worker(
            queue=self.queue, devices=self.store, providers=self.providers, log=self.log, clock=clock, **kw
        )

    async def run(self, *jobs: PushJob) -> None:
        for job in jobs:
            await self.queue.enqueue(job)
        async with asyncio.timeout(10):
            await self.worker.run()

    def outcomes(self) -> dict[str, str]:
        rows = self.log.rows
        return {r.device_id or "-": f"{r.outcome}:{r.reason}" if r.reason else r.outcome for r in rows}


async def test_delivered_marks_used_in_one_call_and_builds_each_payload_once(clock: ManualClock) -> None:
    rig = Rig(clock)
    await rig.run(push_job())
    assert set(rig.outcomes().values()) == {"delivered"} and len(rig.log.rows) == 4
    assert len(rig.log.batches) == 1  # one insert per job
    assert [sorted(ids) for ids in rig.store.used] == [sorted(d.id for d in DEVICES)]
    assert all(len(p.prepared) == 1 for p in rig.providers.values())
    row = rig.log.rows[0]
    assert row.event_id == "ev-1" and row.attempt == 1 and row.latency_ms is not None
    assert await rig.queue.depth() == 0
    assert "j_complete=1" in repr(rig.worker) and "delivered=4" in repr(rig.worker)


async def test_dead_token_disables_that_device_only(clock: ManualClock) -> None:
    rig = Rig(clock, {"a2": Result(Outcome.dead_token, "Unregistered", status=410)})
    await rig.run(push_job())
    assert rig.store.disabled == [("apns", "a2", "Unregistered")]
    assert rig.outcomes()["d-apns-2"] == "dead_token:Unregistered"
    assert await rig.queue.depth() == 0  # nothing to retry


async def test_retry_later_requeues_only_those_devices_after_retry_after(clock: ManualClock) -> None:
    rig = Rig(clock, {"f1": Result(Outcome.retry_later, "UNAVAILABLE", status=503, retry_after=30)})
    await rig.run(push_job())
    stats = await rig.queue.stats()
    assert stats.delayed == 1 and stats.due == 0
    clock.advance(29)
    assert (await rig.queue.stats()).due == 0  # Retry-After: 30 is honoured, never earlier
    clock.advance(2)
    [lease] = await rig.queue.reserve("peek", block_seconds=0.1)
    assert lease.job.attempt == 2 and lease.job.device_ids == ("d-fcm-1",)


async def test_retry_then_dead_letter_after_max_attempts(clock: ManualClock) -> None:
    rig = Rig(clock, {"f1": Result(Outcome.retry_later, "INTERNAL", status=500)})
    await rig.run(push_job())
    for _ in range(2):  # attempts 2 and 3, each after its backoff
        clock.advance(3600)
        await rig.run()
    assert rig.providers["fcm"].sent == ["f1", "f1", "f1"]
    assert rig.providers["apns"].sent == ["a1", "a2"]  # delivered devices are not resent on retry
    [dead] = await rig.queue.dead_letters()
    assert dead.job.device_ids == ("d-fcm-1",) and dead.job.attempt == 3
    assert "gave up after 3 attempt(s)" in dead.reason and "INTERNAL" in dead.reason
    assert [r.attempt for r in rig.log.rows if r.device_id == "d-fcm-1"] == [1, 2, 3]
    assert await rig.queue.depth() == 0


async def test_fcm_quota_waits_at_least_60_seconds(clock: ManualClock) -> None:
    rig = Rig(clock, {"f1": Result(Outcome.retry_later, "QUOTA_EXCEEDED", status=429)})
    await rig.run(push_job())
    clock.advance(59)
    assert (await rig.queue.stats()).due == 0
    clock.advance(60)
    assert (await rig.queue.stats()).due == 1


async def test_credentials_error_alerts_and_disables_nothing(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    refused = Result(Outcome.credentials, "InvalidProviderToken", status=403)
    rig = Rig(clock, {"a1": refused, "a2": refused})
    with caplog.at_level(logging.ERROR, logger="tidings.delivery"):
        await rig.run(push_job())
    assert rig.store.disabled == []
    assert rig.outcomes()["d-apns-1"] == "credentials:InvalidProviderToken"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "credentials" in r.getMessage()]
    assert len(errors) == 1 and "2 device(s)" in errors[0].getMessage()  # once per provider, not per device
    assert await rig.queue.depth() == 0  # not retried: a configuration fix is needed, not a retry


async def test_rejected_is_recorded_not_retried(clock: ManualClock) -> None:
    rig = Rig(clock, {"f1": Result(Outcome.rejected, "INVALID_ARGUMENT: payload", status=400)})
    await rig.run(push_job())
    assert rig.outcomes()["d-fcm-1"].startswith("rejected:")
    assert await rig.queue.depth() == 0 and rig.store.disabled == []


async def test_missing_and_unconfigured_providers_are_skipped(clock: ManualClock) -> None:
    rig = Rig(clock)
    del rig.providers["webpush"]
    rig.providers["fcm"]._configured = False
    await rig.run(push_job())
    out = rig.outcomes()
    assert out["d-web-1"] == "skipped:not_configured" and out["d-fcm-1"] == "skipped:not_configured"
    assert out["d-apns-1"] == "delivered" and rig.providers["fcm"].sent == []
    assert await rig.queue.depth() == 0


async def test_a_provider_that_raises_does_not_crash_the_worker(clock: ManualClock) -> None:
    async def boom(target: Target) -> Result:
        raise RuntimeError("surprise")

    rig = Rig(clock, {"a1": boom})
    await rig.run(push_job(), push_job(event_id="ev-2"))
    assert rig.outcomes()["d-apns-1"] == "retry_later:error: RuntimeError: surprise"
    assert rig.worker.counters["jobs.retried"] == 2
    assert sum(1 for r in rig.log.rows if r.outcome == "delivered") == 6


async def test_a_hanging_provider_times_out_without_stalling_the_others(clock: ManualClock) -> None:
    async def hang(target: Target) -> Result:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    rig = Rig(clock, {"a1": hang}, send_timeout=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await rig.run(push_job())
    assert loop.time() - started < 2
    assert rig.outcomes()["d-apns-1"] == "retry_later:timeout after 0.3s"
    delivered = sorted(r.device_id or "" for r in rig.log.rows if r.outcome == "delivered")
    assert delivered == ["d-apns-2", "d-fcm-1", "d-web-1"]


async def test_concurrency_per_provider_is_bounded(clock: ManualClock) -> None:
    async def slow(target: Target) -> Result:
        await asyncio.sleep(0.01)
        return Result(Outcome.delivered)

    many = [FakeDevice(f"d{i}", "u9", "apns", f"t{i}") for i in range(40)]
    rig = Rig(clock, {f"t{i}": slow for i in range(40)}, concurrency=3, max_jobs=4)
    rig.store = FakeStore(many)
    rig.worker.dispatcher.devices = rig.worker.writer.devices = rig.store
    await rig.run(*(push_job(("u9",), event_id=f"ev-{j}") for j in range(4)))
    assert len(rig.log.rows) == 160
    assert rig.providers["apns"].max_active == 3  # shared by the 4 concurrent jobs


async def test_retry_skips_devices_disabled_meanwhile(clock: ManualClock) -> None:
    rig = Rig(clock)
    await rig.store.disable("apns", "a1", "Unregistered")
    await rig.run(push_job(device_ids=("d-apns-1", "d-apns-2", "gone"), attempt=2))
    assert rig.providers["apns"].sent == ["a2"]
    assert rig.log.rows[0].attempt == 2


async def test_device_lookup_failure_retries_the_whole_job(clock: ManualClock) -> None:
    rig = Rig(clock)
    rig.store.fail_lookups = 1
    await rig.run(push_job())
    assert rig.worker.counters["jobs.retried"] == 1 and rig.log.rows == []
    clock.advance(3600)
    await rig.run()
    assert len(rig.log.rows) == 4 and {r.attempt for r in rig.log.rows} == {2}


async def test_nobody_to_push_to_is_logged_once(clock: ManualClock) -> None:
    rig = Rig(clock)
    await rig.run(push_job(("nobody",)))
    [row] = rig.log.rows
    assert (row.device_id, row.outcome, row.reason) == (None, "skipped", "no_active_devices")


async def test_invalid_spec_is_dead_lettered(clock: ManualClock) -> None:
    rig = Rig(clock)
    bad = PushJob("ev-x", "t", {"users": ["u1"]}, {"mode": "loud"}, {})
    await rig.run(bad)
    [dead] = await rig.queue.dead_letters()
    assert dead.reason.startswith("invalid push spec")


async def test_mark_used_is_chunked_under_driver_parameter_limits(clock: ManualClock) -> None:
    many = [FakeDevice(f"d{i}", "u9", "apns", f"t{i}") for i in range(12_000)]
    rig = Rig(clock, concurrency=64)
    rig.store = FakeStore(many)
    rig.worker.dispatcher.devices = rig.worker.writer.devices = rig.store
    await rig.run(push_job(("u9",)))
    assert [len(ids) for ids in rig.store.used] == [5000, 5000, 2000]
    assert len(rig.log.batches) == 1 and len(rig.log.rows) == 12_000


async def test_dead_token_is_disabled_only_if_not_registered_again_since_the_send(clock: ManualClock) -> None:
    rig = Rig(clock, {"a2": Result(Outcome.dead_token, "Unregistered", status=410)})
    before = clock()
    await rig.run(push_job())
    [seen_before] = rig.store.seen_before
    assert seen_before is not None and before <= seen_before <= clock()
