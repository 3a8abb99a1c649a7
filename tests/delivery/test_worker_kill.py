"""At-least-once across processes: a `tidings worker` SIGKILLed mid-batch on the Redis queue loses nothing —
another worker process reclaims the job after the visibility timeout and finishes it — and repeats only the
sends that were in flight at the kill: those answered before it were checkpointed, and are skipped.

Real parts only: two `python -m tidings worker` processes, Redis Streams at 127.0.0.1:6379, a shared SQLite
registry and delivery log, and the APNs sandbox (HTTP/2 over a real socket) in this test process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from support import REDIS_URL, ManualClock, drop_prefix, redis_or_skip
from tidings.delivery.queue import Lease, QueueOptions
from tidings.delivery.queue.redis import GROUP, RedisQueue

from .sandbox_rig import KEY_ID, TEAM_ID, TOPIC, ApnsRig, apns_rig, order_job

VISIBILITY = 1.0
DEVICES = 24
CONCURRENCY = 4  # sends in flight at once: the most a kill may repeat


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    client = await redis_or_skip()
    yield client
    await client.aclose()


def worker_env(rig: ApnsRig, tmp_path: Path, prefix: str) -> dict[str, str]:
    key_path = tmp_path / "apns.p8"
    key_path.write_bytes(rig.key_pem)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    src = str(Path(__file__).resolve().parents[2] / "src")
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [src, env.get("PYTHONPATH", "")])),
        TIDINGS_BUS_URL=REDIS_URL,
        TIDINGS_REDIS_PREFIX=prefix,
        TIDINGS_DATABASE_URL=rig.database_url,
        TIDINGS_DATA_DIR=str(tmp_path / "data"),
        TIDINGS_APNS_KEY_PATH=str(key_path),
        TIDINGS_APNS_KEY_ID=KEY_ID,
        TIDINGS_APNS_TEAM_ID=TEAM_ID,
        TIDINGS_APNS_TOPIC=TOPIC,
        TIDINGS_APNS_URL=rig.sandbox.url,
        TIDINGS_PUSH_VISIBILITY_TIMEOUT=str(VISIBILITY),
        TIDINGS_WORKER_CONCURRENCY=str(CONCURRENCY),  # 24 devices take several rounds: a kill lands mid-batch
        TIDINGS_LOG_FORMAT="text",
    )
    return env


def start_worker(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tidings", "worker", *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def wait_for(condition: Callable[[], object], seconds: float) -> None:
    # Polling, never a blocking wait: the sandbox answering the workers runs on this very event loop.
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.02)


async def exit_code(proc: subprocess.Popen[bytes], seconds: float) -> int:
    await wait_for(lambda: proc.poll() is not None, seconds)
    return proc.returncode


def stop_all(*procs: subprocess.Popen[bytes] | None) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


async def checkpointed(queue: RedisQueue, client: Redis) -> int:
    """How many devices the queue holds as answered for the one job in flight."""
    pending = await client.xpending_range(queue.stream, GROUP, min="-", max="+", count=1)
    if not pending:
        return 0
    entry_id = pending[0]["message_id"].decode()
    return len(await queue.answered(Lease(entry_id, order_job([]), "any")))


@pytest.mark.redis
async def test_sigkilled_worker_loses_nothing_and_repeats_only_its_in_flight_sends(
    tmp_path: Path, clock: ManualClock, redis_client: Redis, redis_prefix: str
) -> None:
    async with apns_rig(tmp_path, clock) as rig:
        devices = [await rig.register("u1") for _ in range(DEVICES)]
        # The worker sends in id order, 4 at a time: with the 9th-12th slow (once), all four runners of
        # the first worker are stuck there when it is killed: 8 sent and answered, 4 sent and waiting for
        # their answer (in flight), 12 never reached.
        in_order = sorted(devices, key=lambda d: d.id)
        slow = in_order[8:12]
        for device in slow:
            rig.rule(device.token, 200, delay=30, times=1)
        options = QueueOptions(visibility_timeout=VISIBILITY)
        queue = RedisQueue(REDIS_URL, prefix=redis_prefix, options=options)
        env = worker_env(rig, tmp_path, redis_prefix)
        first = start_worker(env, tmp_path / "first.log")
        second: subprocess.Popen[bytes] | None = None
        try:
            await queue.enqueue(order_job(["u1"], event_id="ev-kill"))
            await wait_for(lambda: all(rig.received(d.token) for d in slow), 30)
            sent_by_first = {r["token"] for r in rig.received()}
            assert sent_by_first == {d.token for d in in_order[:12]}  # mid-batch: 12 sent, 12 not yet
            # The 8 answers reach the checkpoint within the worker's checkpoint interval (1 s). Bounded and
            # not asserted: a worker that never checkpoints is caught below, by what the kill repeats.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    while await checkpointed(queue, redis_client) < 8:
                        await asyncio.sleep(0.02)
            first.send_signal(signal.SIGKILL)
            assert await exit_code(first, 10) == -signal.SIGKILL
            killed_at = time.monotonic()
            assert (await queue.stats()).in_flight == 1  # the dead worker's lease is still there

            second = start_worker(env, tmp_path / "second.log", "--burst")
            code = await exit_code(second, 30)
            finished_in = time.monotonic() - killed_at
            assert code == 0, (tmp_path / "second.log").read_text()
        finally:
            stop_all(first, second)
        stats = await queue.stats()
        await queue.close()
        left = [k async for k in redis_client.scan_iter(f"{redis_prefix}:push:answered:*")]
        await drop_prefix(redis_client, redis_prefix)

    assert (stats.ready, stats.in_flight, stats.delayed, stats.dead) == (0, 0, 0, 0)
    assert left == []  # the checkpoint went with the ack
    rows = await _rows_for(rig, "ev-kill")
    # Every device, those the first worker never reached included, logged once.
    assert sorted(r.device_id for r in rows if r.outcome == "delivered") == sorted(d.id for d in devices)
    received = rig.received()
    times = Counter(r["token"] for r in received)
    repeated = {token for token, n in times.items() if n > 1}
    in_flight = {d.token for d in slow}
    print(f"\nkill mid-batch: {len(repeated)} send(s) repeated, {len(in_flight)} in flight at the kill")
    # Exactly the sends in flight at the kill were repeated, once; every other device got its push once.
    assert repeated == in_flight and len(in_flight) <= CONCURRENCY, f"{len(repeated)} repeated"
    assert set(times) == {d.token for d in devices} and max(times.values()) == 2
    # A redelivery is recognisable: the same apns-id for the same (event, device) from both workers.
    ids: dict[str, set[str]] = {}
    for r in received:
        ids.setdefault(r["token"], set()).add(r["headers"]["apns-id"])
    assert all(len(v) == 1 for v in ids.values())
    print(f"reclaim: killed -> second worker done in {finished_in:.2f}s (visibility {VISIBILITY}s)")
    assert finished_in < VISIBILITY + 15  # process start-up (~1-2 s) + visibility + the sends


@pytest.mark.redis
async def test_sigterm_hands_back_a_job_still_running_after_the_grace_period(
    tmp_path: Path, clock: ManualClock, redis_client: Redis, redis_prefix: str
) -> None:
    async with apns_rig(tmp_path, clock) as rig:
        phone = await rig.register("u1")
        rig.rule(phone.token, 200, delay=30, times=1)
        queue = RedisQueue(REDIS_URL, prefix=redis_prefix, options=QueueOptions(visibility_timeout=60))
        env = worker_env(rig, tmp_path, redis_prefix) | {
            "TIDINGS_SHUTDOWN_GRACE_SECONDS": "0.5",
            "TIDINGS_PUSH_VISIBILITY_TIMEOUT": "60",  # a handed-back job must not wait for the timeout
        }
        worker = start_worker(env, tmp_path / "worker.log")
        again: subprocess.Popen[bytes] | None = None
        try:
            await queue.enqueue(order_job(["u1"], event_id="ev-term"))
            await wait_for(lambda: rig.received(phone.token), 30)
            started = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            assert await exit_code(worker, 15) == 0, (tmp_path / "worker.log").read_text()
            stopped_in = time.monotonic() - started
            stats = await queue.stats()
            assert (stats.ready, stats.in_flight) == (1, 0)  # handed back at once, ready for the next worker
            again = start_worker(env, tmp_path / "again.log", "--burst")
            assert await exit_code(again, 30) == 0, (tmp_path / "again.log").read_text()
        finally:
            stop_all(worker, again)
        assert await queue.depth() == 0
        await queue.close()
        await drop_prefix(redis_client, redis_prefix)
    assert stopped_in < 5
    assert "j_returned=1" in (tmp_path / "worker.log").read_text()
    rows = await _rows_for(rig, "ev-term")
    assert [r.outcome for r in rows] == ["delivered"]


async def _rows_for(rig: ApnsRig, event_id: str) -> list:  # type: ignore[type-arg]
    from tidings import db
    from tidings.delivery.log import DeliveryLog

    engine = db.create_engine(rig.database_url)
    try:
        return await DeliveryLog(engine).query(event_id=event_id, limit=1000)
    finally:
        await engine.dispose()
