"""Event buses, chosen by URL: `memory://` (one process) and `redis://` (pub/sub across processes)."""

from __future__ import annotations

from ..clock import Clock, system_clock
from .base import Bus, Deliver

__all__ = ["Bus", "Deliver", "create_bus"]


def create_bus(
    url: str,
    *,
    prefix: str = "tidings",
    max_events: int = 1000,
    max_age: float = 600,
    clock: Clock = system_clock,
) -> Bus:
    """A bus for `url`; backends are imported lazily so `memory://` needs no Redis client."""
    if url.startswith("memory://"):
        from .memory import MemoryBus

        return MemoryBus(max_events=max_events, max_age=max_age, clock=clock)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisBus

        return RedisBus(url, prefix=prefix, max_events=max_events, max_age=max_age, clock=clock)
    raise ValueError(f"no bus for {url!r}: use memory:// or redis://")
