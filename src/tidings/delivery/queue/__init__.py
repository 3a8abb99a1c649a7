"""The push job queue, chosen by URL like the bus: `memory://` (one process, embedded mode) or Redis Streams
with a consumer group (`redis://`), lazily imported; tests may pass an instance instead."""

from __future__ import annotations

from typing import Any

from ...clock import Clock, system_clock
from ...config import Settings
from .base import DeadLetter, Lease, PushJob, Queue, QueueOptions, QueueStats

__all__ = ["DeadLetter", "Lease", "PushJob", "Queue", "QueueOptions", "QueueStats", "create_queue"]


def create_queue(settings: Settings, *, clock: Clock = system_clock, client: Any = None) -> Queue:
    """The queue the settings ask for: memory for `memory://`, Redis Streams otherwise."""
    options = QueueOptions(visibility_timeout=settings.push_visibility_timeout, clock=clock)
    if not settings.uses_redis:
        from .memory import MemoryQueue

        return MemoryQueue(options)
    from .redis import RedisQueue

    return RedisQueue(settings.bus_url, prefix=settings.redis_prefix, options=options, client=client)
