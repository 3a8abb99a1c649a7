"""Every outcome row's effect, end to end: real DeviceStore (SQLite), the APNs sandbox over a real HTTP/2
socket, the real ApnsProvider, the worker, and the delivery log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from support import ManualClock
from tidings.delivery.queue import QueueOptions
from tidings.delivery.queue.memory import MemoryQueue
from tidings.delivery.retry import RetryPolicy
from tidings.push.apns import ApnsProvider

from .sandbox_rig import ApnsRig, apns_rig, new_key_pem, order_job


@pytest.fixture
async def rig(tmp_path: Path, clock: ManualClock) -> AsyncIterator[ApnsRig]:
    async with apns_rig(tmp_path, clock) as r:
        yield r


@pytest.fixture
def queue(clock: ManualClock) -> MemoryQueue:
    return MemoryQueue(QueueOptions(visibility_timeout=30, clock=clock))


@pytest.fixture
async def apns(rig: ApnsRig) -> AsyncIterator[ApnsProvider]:
    provider = rig.provider()
    yield provider
    await provider.aclose()


async def drain(rig: ApnsRig, queue: MemoryQueue, providers: dict[str, object], **kw: object) -> None:
    worker = rig.worker(queue, providers, **kw)  # type: ignore[arg-type]
    async with asyncio.timeout(20):
        await worker.run()


async def test_silent_push_is_delivered_and_logged(
    rig: ApnsRig, queue: MemoryQueue, apns: ApnsProvider
) -> None:
    phone = await rig.register("u1")
    await queue.enqueue(order_job(["u1"]))
    await drain(rig, queue, {"apns": apns})
    [got] = rig.received(phone.token)
    assert got["headers"]["apns-push-type"] == "background" and got["headers"]["apns-priority"] == "5"
    assert orjson.loads(got["body"])["aps"] == {"content-available": 1}
    [row] = await rig.log.query(event_id="ev-1")
    assert (row.device_id, row.user_id, row.outcome, row.status) == (phone.id, "u1", "delivered", 200)
    device = await rig.store.get(phone.id)
    assert device is not None and device.last_used_at is not None


@pytest.mark.parametrize(("status", "reason"), [(410, "Unregistered"), (400, "BadDeviceToken")])
async def test_dead_token_disables_the_device(
    rig: ApnsRig, queue: MemoryQueue, apns: ApnsProvider, status: int, reason: str
) -> None:
    dead, alive = await rig.register("u1"), await rig.register("u1")
    rig.rule(dead.token, status, reason)
    await queue.enqueue(order_job(["u1"]))
    await drain(rig, queue, {"apns": apns})
    gone, kept = await rig.store.get(dead.id), await rig.store.get(alive.id)
    assert gone is not None and gone.disabled_at is not None and gone.disabled_reason == reason
    assert kept is not None and kept.disabled_at is None
    assert await queue.depth() == 0
    # The next event no longer reaches the dead token.
    await queue.enqueue(order_job(["u1"], event_id="ev-2"))
    await drain(rig, queue, {"apns": apns})
    assert len(rig.received(dead.token)) == 1 and len(rig.received(alive.token)) == 2


async def test_retry_after_is_honoured_then_delivered(
    rig: ApnsRig, queue: MemoryQueue, apns: ApnsProvider, clock: ManualClock
) -> None:
    busy, fine = await rig.register("u1"), await rig.register("u1")
    rig.rule(busy.token, 429, "TooManyRequests", retry_after="30", times=1)
    await queue.enqueue(order_job(["u1"]))
    await drain(rig, queue, {"apns": apns})
    stats = await queue.stats()
    assert (stats.delayed, stats.due) == (1, 0)
    clock.advance(29.5)
    assert (await queue.stats()).due == 0  # not before the 30 s the provider asked for
    clock.advance(1)
    await drain(rig, queue, {"apns": apns})
    rows = await rig.log.query(event_id="ev-1")
    assert sorted((r.device_id, r.attempt, r.outcome) for r in rows) == sorted(
        [(busy.id, 1, "retry_later"), (busy.id, 2, "delivered"), (fine.id, 1, "delivered")]
    )
    assert len(rig.received(fine.token)) == 1  # the retry went only to the device that asked for it


async def test_credentials_refused_disables_nothing(rig: ApnsRig, queue: MemoryQueue) -> None:
    phone = await rig.register("u1")
    wrong_key, _ = new_key_pem()  # the sandbox verifies the JWT against the real key: InvalidProviderToken
    provider = rig.provider(key_pem=wrong_key)
    try:
        await queue.enqueue(order_job(["u1"]))
        await drain(rig, queue, {"apns": provider})
    finally:
        await provider.aclose()
    [row] = await rig.log.query(event_id="ev-1")
    assert (row.outcome, row.status) == ("credentials", 403)
    device = await rig.store.get(phone.id)
    assert device is not None and device.disabled_at is None
    assert await queue.depth() == 0


async def test_dead_letter_after_max_attempts(
    rig: ApnsRig, queue: MemoryQueue, apns: ApnsProvider, clock: ManualClock
) -> None:
    phone = await rig.register("u1")
    rig.rule(phone.token, 503, "ServiceUnavailable")
    await queue.enqueue(order_job(["u1"]))
    for _ in range(3):
        await drain(rig, queue, {"apns": apns}, retry_policy=RetryPolicy(max_attempts=3))
        clock.advance(3600)
    [dead] = await queue.dead_letters()
    assert dead.job.device_ids == (phone.id,) and "ServiceUnavailable" in dead.reason
    assert "gave up after 3" in dead.reason
    assert [r.attempt for r in await rig.log.query(event_id="ev-1")] == [3, 2, 1]
    device = await rig.store.get(phone.id)
    assert device is not None and device.disabled_at is None


async def test_a_hanging_provider_times_out_without_stalling_the_others(
    rig: ApnsRig, queue: MemoryQueue
) -> None:
    stuck = await rig.register("u1")
    others = [await rig.register("u1") for _ in range(5)]
    rig.rule(stuck.token, 200, delay=60)
    provider = rig.provider(timeout=0.5)  # the provider's own per-request timeout
    try:
        await queue.enqueue(order_job(["u1"]))
        started = time.monotonic()
        await drain(rig, queue, {"apns": provider})
        elapsed = time.monotonic() - started
    finally:
        await provider.aclose()
    assert elapsed < 3
    rows = {r.device_id: r for r in await rig.log.query(event_id="ev-1")}
    assert rows[stuck.id].outcome == "retry_later" and "timeout" in rows[stuck.id].reason
    assert all(rows[d.id].outcome == "delivered" for d in others)
    # Not held up by the hung stream on the same HTTP/2 connection (httpx/httpcore did hold them until its
    # read timed out: the stream blocked in a read kept the connection's read lock).
    assert max(rows[d.id].latency_ms or 0 for d in others) < 300


async def test_a_missing_provider_is_skipped_cleanly(
    rig: ApnsRig, queue: MemoryQueue, apns: ApnsProvider
) -> None:
    from tidings.registry.validation import DeviceIn

    phone = await rig.register("u1")
    android, _ = await rig.store.register(
        "u1", DeviceIn(provider="fcm", platform="android", token="fcm-token-1")
    )
    await queue.enqueue(order_job(["u1"]))
    await drain(rig, queue, {"apns": apns})  # no FCM provider at all
    rows = {r.device_id: r for r in await rig.log.query(event_id="ev-1")}
    assert (rows[android.id].outcome, rows[android.id].reason) == ("skipped", "not_configured")
    assert rows[phone.id].outcome == "delivered"
    assert await queue.depth() == 0 and (await rig.store.get(android.id)).disabled_at is None  # type: ignore[union-attr]


async def test_a_token_registered_again_while_its_410_was_in_flight_stays_enabled(
    rig: ApnsRig, queue: MemoryQueue, apns: ApnsProvider
) -> None:
    phone = await rig.register("u1")
    rig.rule(phone.token, 410, "Unregistered", delay=0.5)  # the answer about the old install is slow
    await queue.enqueue(order_job(["u1"]))
    worker = rig.worker(queue, {"apns": apns})
    async with asyncio.timeout(10):
        running = asyncio.create_task(worker.run())
        while not rig.received(phone.token):
            await asyncio.sleep(0.01)
        again = await rig.register("u1", token=phone.token)  # the reinstalled app registers the same token
        await running
    assert again.id == phone.id
    device = await rig.store.get(phone.id)
    assert device is not None and device.disabled_at is None
    [row] = await rig.log.query(event_id="ev-1")
    assert row.outcome == "dead_token"  # the log still says what Apple answered
