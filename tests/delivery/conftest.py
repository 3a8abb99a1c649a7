"""Fixtures for the delivery tests: a controllable clock, the real Redis, and a queue per backend."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tidings.delivery.queue import Queue, QueueOptions
from tidings.delivery.queue.memory import MemoryQueue
from tidings.delivery.queue.redis import RedisQueue

REDIS_URL = os.environ.get("TIDINGS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class StepClock:
    """Real time plus an offset we can advance: delays become due at once, while Redis's own idle timers
    (which a test cannot fake) still run on real time."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


async def redis_or_skip() -> Redis:
    client: Redis = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:  # any connection failure means the service is absent
        await client.aclose()
        message = f"Redis not reachable at {REDIS_URL}: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return client


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    client = await redis_or_skip()
    yield client
    await client.aclose()


@pytest.fixture
def redis_prefix() -> str:
    return f"test-delivery-{uuid.uuid4().hex[:12]}"


async def drop_prefix(client: Redis, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await client.delete(*keys)


@pytest.fixture(params=["memory", "redis"])
async def queue(request: pytest.FixtureRequest, clock: StepClock, redis_prefix: str) -> AsyncIterator[Queue]:
    options = QueueOptions(visibility_timeout=0.3, clock=clock)
    if request.param == "memory":
        q: Queue = MemoryQueue(options)
        yield q
        await q.close()
        return
    client = await redis_or_skip()
    q = RedisQueue(REDIS_URL, prefix=redis_prefix, options=options)
    yield q
    await q.close()
    await drop_prefix(client, redis_prefix)
    await client.aclose()
