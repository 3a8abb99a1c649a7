"""Fixtures for the delivery tests: a queue per backend (memory and the real Redis), same contract."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from support import REDIS_URL, ManualClock, drop_prefix, redis_or_skip
from tidings.delivery.queue import Queue, QueueOptions
from tidings.delivery.queue.memory import MemoryQueue
from tidings.delivery.queue.redis import RedisQueue


@pytest.fixture(params=["memory", "redis"])
async def queue(
    request: pytest.FixtureRequest, clock: ManualClock, redis_prefix: str
) -> AsyncIterator[Queue]:
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
