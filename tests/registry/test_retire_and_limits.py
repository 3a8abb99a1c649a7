"""The pruning job (controllable clock, no sleeps) and the registration rate limiter."""

from __future__ import annotations

import asyncio
import logging

import pytest

from registry.helpers import T0, apns_body, device_in
from support import ManualClock
from tidings.registry.ratelimit import RateLimited, RegistrationLimiter
from tidings.registry.retire import run_pruner
from tidings.registry.store import DeviceStore

DAY = 86_400.0


async def test_pruner_runs_until_stopped_and_logs_the_count(
    store: DeviceStore, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    await store.register("ana", device_in(apns_body()))
    await store.register("bob", device_in(apns_body()))
    clock.advance(91 * DAY)
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="tidings.registry.retire")
    pruned = asyncio.Event()
    original = store.prune

    async def observed() -> object:
        report = await original()
        pruned.set()
        return report

    store.prune = observed  # type: ignore[method-assign]
    task = asyncio.create_task(run_pruner(store, interval=3600, stop_event=stop))
    async with asyncio.timeout(10):
        await pruned.wait()
        stop.set()
        await task  # returns promptly on stop, without waiting out the interval
    assert await store.list_active_for_audience(broadcast=True) == []
    record = next(r for r in caplog.records if "pruned 2 devices" in r.getMessage())
    assert record.__dict__["pruned"] == 2


async def test_pruner_survives_a_failing_round(
    store: DeviceStore, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    stop = asyncio.Event()
    original = store.prune

    async def flaky() -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("database went away")
        stop.set()
        return await original()

    monkeypatch.setattr(store, "prune", flaky)
    async with asyncio.timeout(10):
        await run_pruner(store, interval=0.01, stop_event=stop)
    assert calls == 2
    assert any("device pruning failed" in r.getMessage() for r in caplog.records)


def test_limiter_allows_a_burst_then_refills_at_the_steady_rate() -> None:
    clock = ManualClock(frozen_at=T0)
    limiter = RegistrationLimiter(30, clock=clock)
    assert all(limiter.check("ana") is None for _ in range(30))
    assert limiter.check("ana") == RateLimited(retry_after=2)  # 30/min = one every 2 s
    assert limiter.check("bob") is None
    clock.advance(1.9)
    assert isinstance(limiter.check("ana"), RateLimited)
    clock.advance(0.1)
    assert limiter.check("ana") is None
    assert isinstance(limiter.check("ana"), RateLimited)
    clock.advance(60)
    assert all(limiter.check("ana") is None for _ in range(30)), "a full minute refills the whole bucket"


def test_limiter_zero_means_unlimited() -> None:
    limiter = RegistrationLimiter(0, clock=ManualClock(frozen_at=T0))
    assert all(limiter.check("ana") is None for _ in range(1000))


def test_limiter_memory_is_bounded_and_keeps_active_users() -> None:
    clock = ManualClock(frozen_at=T0)
    limiter = RegistrationLimiter(2, clock=clock, max_users=100)
    limiter.check("busy")
    limiter.check("busy")
    for i in range(1000):
        clock.advance(0.001)
        limiter.check(f"u{i}")
    assert len(limiter._buckets) <= 100
    assert isinstance(limiter.check("busy"), RateLimited), "a user being limited is not forgotten"
