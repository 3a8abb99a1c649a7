"""Delivery policy: who gets a push or a stream event, and when.

Presence (who is online anywhere), debounce windows (leading + trailing edge), preferences (push on/off, mutes,
quiet hours), held pushes, and the decision that puts them together (`decide.py`).

Backends are chosen by URL like the bus's: `memory://` (one process) or `redis://` / `rediss://` / `unix://`,
imported lazily so the embedded mode never loads the Redis backends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .debounce import Closed, DebounceFlusher, DebounceOptions, DebounceStore, Merged, Offer
from .debounce_memory import MemoryDebounce
from .presence import MemoryPresence, Presence, PresenceOptions, PresenceStatus

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "Closed",
    "DebounceFlusher",
    "DebounceOptions",
    "DebounceStore",
    "MemoryDebounce",
    "MemoryPresence",
    "Merged",
    "Offer",
    "Presence",
    "PresenceOptions",
    "PresenceStatus",
    "create_debounce",
    "create_presence",
]

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def create_presence(
    url: str = "memory://",
    *,
    prefix: str = "tidings",
    options: PresenceOptions | None = None,
    client: Redis | None = None,
) -> Presence:
    """Presence for a bus URL; `client` shares an existing Redis connection pool (not closed by us)."""
    if url.startswith("memory://"):
        return MemoryPresence(options)
    if url.startswith(_REDIS_SCHEMES):
        from .presence_redis import RedisPresence

        return RedisPresence(url, prefix=prefix, options=options, client=client)
    raise ValueError(f"no presence backend for {url!r}: use memory:// or redis://")


def create_debounce(
    url: str = "memory://",
    *,
    prefix: str = "tidings",
    options: DebounceOptions | None = None,
    client: Redis | None = None,
) -> DebounceStore:
    """Debounce windows for a bus URL; with Redis they hold across every process sharing it."""
    if url.startswith("memory://"):
        return MemoryDebounce(options)
    if url.startswith(_REDIS_SCHEMES):
        from .debounce_redis import RedisDebounce

        return RedisDebounce(url, prefix=prefix, options=options, client=client)
    raise ValueError(f"no debounce backend for {url!r}: use memory:// or redis://")
