"""The outcome table across all three providers, built from Settings as `tidings worker` builds them, over
the APNs, FCM and Web Push sandboxes on real sockets, with the real DeviceStore and delivery log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support import ManualClock
from tidings.delivery.queue import QueueOptions
from tidings.delivery.queue.memory import MemoryQueue
from tidings.delivery.runner import worker_from_settings
from tidings.push import build_providers
from tidings.push.base import Provider
from tidings.sandbox.control import Rule

from .sandbox_rig import AllRig, all_rig, order_job


@pytest.fixture
async def rig(tmp_path: Path, clock: ManualClock) -> AsyncIterator[AllRig]:
    async with all_rig(tmp_path, clock) as r:
        yield r


@pytest.fixture
def queue(clock: ManualClock) -> MemoryQueue:
    return MemoryQueue(QueueOptions(visibility_timeout=30, clock=clock))


async def drain(rig: AllRig, queue: MemoryQueue, clock: ManualClock, *, send_timeout: float = 10.0) -> None:
    providers: dict[str, Provider] = build_providers(rig.settings, clock=time.time, timeout=send_timeout)
    worker = worker_from_settings(
        rig.settings,
        queue=queue,
        devices=rig.apns.store,
        log=rig.apns.log,
        providers=providers,
        clock=clock,
        burst=True,
    )
    try:
        async with asyncio.timeout(30):
            await worker.run()
    finally:
        for provider in providers.values():
            await provider.aclose()


async def outcomes(rig: AllRig, event_id: str = "ev-1") -> dict[str, tuple[str, str]]:
    """Each device's latest outcome."""
    rows = await rig.apns.log.query(event_id=event_id)
    return {r.device_id or "-": (r.outcome, r.reason) for r in reversed(rows)}


async def test_one_event_reaches_every_provider(rig: AllRig, queue: MemoryQueue, clock: ManualClock) -> None:
    phone, android, browser = (
        await rig.apns.register("u1"),
        await rig.register_fcm("u1"),
        await rig.register_webpush("u1"),
    )
    await queue.enqueue(order_job(["u1"]))
    await drain(rig, queue, clock)
    got = await outcomes(rig)
    assert {k: v[0] for k, v in got.items()} == {
        phone.id: "delivered",
        android.id: "delivered",
        browser.id: "delivered",
    }
    [fcm_sent] = [r for r in rig.fcm.state.records if r.get("kind") == "send"]
    assert fcm_sent["token"] == android.token and fcm_sent["message"]["data"]["type"] == "order.created"
    [web_sent] = rig.webpush.state.records
    assert web_sent["token"] == browser.token and web_sent["headers"]["ttl"] != "0"


@pytest.mark.parametrize("code", ["UNREGISTERED", "SENDER_ID_MISMATCH"])
async def test_fcm_dead_token_disables_the_device(
    rig: AllRig, queue: MemoryQueue, clock: ManualClock, code: str
) -> None:
    android = await rig.register_fcm("u1")
    rig.fcm_rule(android.token, code)
    await queue.enqueue(order_job(["u1"]))
    await drain(rig, queue, clock)
    device = await rig.apns.store.get(android.id)
    assert device is not None and device.disabled_at is not None and device.disabled_reason == code


@pytest.mark.parametrize("status", [404, 410])
async def test_webpush_gone_disables_the_subscription(
    rig: AllRig, queue: MemoryQueue, clock: ManualClock, status: int
) -> None:
    browser, other = await rig.register_webpush("u1"), await rig.register_webpush("u1")
    rig.webpush_rule(browser.token, status)
    await queue.enqueue(order_job(["u1"]))
    await drain(rig, queue, clock)
    gone, kept = await rig.apns.store.get(browser.id), await rig.apns.store.get(other.id)
    assert gone is not None and gone.disabled_at is not None
    assert kept is not None and kept.disabled_at is None


async def test_fcm_quota_backs_off_at_least_60_seconds(
    rig: AllRig, queue: MemoryQueue, clock: ManualClock
) -> None:
    android = await rig.register_fcm("u1")
    rig.fcm.state.add_rule(Rule(token=android.token, status=429, reason="QUOTA_EXCEEDED", times=1))
    await queue.enqueue(order_job(["u1"]))
    await drain(rig, queue, clock)
    assert (await outcomes(rig))[android.id] == ("retry_later", "QUOTA_EXCEEDED")
    clock.advance(59)
    assert (await queue.stats()).due == 0
    clock.advance(60 * 1.5)  # the quota backoff is 60 s plus up to 50% spread
    await drain(rig, queue, clock)
    rows = await rig.apns.log.query(event_id="ev-1")
    assert [(r.attempt, r.outcome) for r in rows] == [(2, "delivered"), (1, "retry_later")]


async def test_webpush_retry_after_is_honoured(rig: AllRig, queue: MemoryQueue, clock: ManualClock) -> None:
    browser = await rig.register_webpush("u1")
    rig.webpush_rule(browser.token, 429, retry_after="120", times=1)
    await queue.enqueue(order_job(["u1"]))
    await drain(rig, queue, clock)
    clock.advance(119)
    assert (await queue.stats()).due == 0
    clock.advance(2)
    await drain(rig, queue, clock)
    assert (await outcomes(rig))[browser.id] == ("delivered", "")


async def test_fcm_credentials_error_disables_nothing(
    rig: AllRig, queue: MemoryQueue, clock: ManualClock
) -> None:
    android = await rig.register_fcm("u1")
    rig.fcm.state.add_rule(Rule(token=android.token, status=401, reason="THIRD_PARTY_AUTH_ERROR"))
    await queue.enqueue(order_job(["u1"]))
    await drain(rig, queue, clock)
    assert (await outcomes(rig))[android.id][0] == "credentials"
    device = await rig.apns.store.get(android.id)
    assert device is not None and device.disabled_at is None
    assert await queue.depth() == 0


async def test_a_hanging_provider_does_not_stall_the_other_providers(
    rig: AllRig, queue: MemoryQueue, clock: ManualClock
) -> None:
    phones = [await rig.apns.register("u1") for _ in range(3)]
    androids = [await rig.register_fcm("u1") for _ in range(3)]
    browsers = [await rig.register_webpush("u1") for _ in range(3)]
    rig.apns.rule("*", 200, delay=60)  # APNs accepts the requests and never answers
    await queue.enqueue(order_job(["u1"]))
    started = time.monotonic()
    await drain(rig, queue, clock, send_timeout=1.0)
    elapsed = time.monotonic() - started
    rows = {r.device_id: r for r in await rig.apns.log.query(event_id="ev-1")}
    for d in androids + browsers:
        assert rows[d.id].outcome == "delivered"
        assert (rows[d.id].latency_ms or 0) < 800  # did not wait for APNs
    for d in phones:
        assert rows[d.id].outcome == "retry_later" and "timeout" in rows[d.id].reason
    assert elapsed < 5
    stats = await queue.stats()
    assert stats.delayed + stats.due == 1  # one retry job, for the APNs devices only (jitter may be ~0 s)


async def test_an_unconfigured_provider_is_skipped_cleanly(tmp_path: Path, clock: ManualClock) -> None:
    queue = MemoryQueue(QueueOptions(clock=clock))
    async with all_rig(tmp_path, clock, vapid_private_key_path=None, vapid_subject="") as rig:
        phone, browser = await rig.apns.register("u1"), await rig.register_webpush("u1")
        await queue.enqueue(order_job(["u1"]))
        await drain(rig, queue, clock)
        got = await outcomes(rig)
        assert got[browser.id] == ("skipped", "not_configured") and got[phone.id] == ("delivered", "")
        assert len(rig.webpush.state.records) == 0
        assert await queue.depth() == 0
