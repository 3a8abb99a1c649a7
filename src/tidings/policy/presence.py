"""Presence: is a user online (holding at least one live stream on any process), how many streams, last seen.

The router reports every stream it opens and closes with `connected(user_id)` / `disconnected(user_id)`:
synchronous and O(1), because it runs on the connect path of every stream. Queries are async because the
cluster-wide backend answers from Redis. `tidings.policy.create_presence(url)` picks the backend;
the Redis one (`presence_redis.py`) is imported only when asked for.

`last_seen` is the time (epoch seconds, the injected clock) a user was last known online: `now` while they
are online, the moment their last stream closed afterwards (or, for a process that died, its last heartbeat),
and None once `last_seen_retention` has passed without them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..clock import Clock, system_clock

if TYPE_CHECKING:
    from ..config import Settings


@dataclass(frozen=True, slots=True)
class PresenceStatus:
    """One user's presence: online anywhere, live streams across every process, when last online."""

    online: bool
    connections: int
    last_seen: float | None


@dataclass(frozen=True, slots=True)
class PresenceOptions:
    """Timing and budgets; every process sharing a Redis must use the same `ttl`."""

    ttl: float = 10.0  # a process that has not heartbeated for this long stops counting
    heartbeat: float = 3.0  # how often a process proves it is alive (well under ttl: a missed beat is fine)
    sync_delay: float = 0.1  # local changes are batched this long before they are written (debounce)
    last_seen_retention: float = 30 * 86_400.0  # how long a last-seen time is kept after the user left
    reap_batch: int = 500  # users of a dead process folded into last-seen per heartbeat (bounds one script)
    clock: Clock = system_clock

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat < self.ttl:
            raise ValueError("presence heartbeat must be positive and shorter than the ttl")
        if self.sync_delay < 0 or self.last_seen_retention <= 0 or not 1 <= self.reap_batch <= 3000:
            # 3000: the reap script unpacks 2 x batch arguments, and Lua's C stack holds about 8000
            raise ValueError("presence sync_delay >= 0, last_seen_retention > 0 and 1 <= reap_batch <= 3000")

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock = system_clock) -> PresenceOptions:
        return cls(
            ttl=settings.presence_ttl_seconds,
            heartbeat=settings.presence_heartbeat_seconds,
            sync_delay=settings.presence_sync_delay_seconds,
            last_seen_retention=settings.presence_last_seen_days * 86_400.0,
            clock=clock,
        )


class Presence(ABC):
    """Who is online: fed by the local router, answered for the whole cluster."""

    @abstractmethod
    def connected(self, user_id: str) -> None:
        """A stream of `user_id` opened on this process (synchronous, O(1))."""

    @abstractmethod
    def disconnected(self, user_id: str) -> None:
        """A stream of `user_id` closed on this process (synchronous, O(1); extra calls are ignored)."""

    @abstractmethod
    async def status(self, user_id: str) -> PresenceStatus:
        """Online, live stream count and last seen for one user, across every process."""

    @abstractmethod
    async def online_many(self, user_ids: Iterable[str]) -> dict[str, bool]:
        """Online or not for each of many users (an audience of 1,000 is one Redis round trip)."""

    async def start(self) -> None:
        """Begin background work (heartbeat, sync); the memory backend has none."""
        return None

    async def stop(self) -> None:
        """End background work and withdraw this process's streams from the cluster's count."""
        return None

    async def flush(self) -> None:
        """Write pending local changes now (the background sync does this within `sync_delay`)."""
        return None

    def local_connections(self, user_id: str) -> int:
        """Live streams of `user_id` on this process only."""
        return 0


class LocalCounts:
    """Per-user stream counts of this process; a user with none is not stored, so memory follows who is online."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def up(self, user_id: str) -> int:
        count = self.counts.get(user_id, 0) + 1
        self.counts[user_id] = count
        return count

    def down(self, user_id: str) -> int | None:
        """The new count, or None when the user had no stream here (a duplicate close)."""
        count = self.counts.get(user_id)
        if count is None:
            return None
        if count <= 1:
            del self.counts[user_id]
            return 0
        self.counts[user_id] = count - 1
        return count - 1


class MemoryPresence(Presence):
    """One process is the whole cluster: presence is the local connection table."""

    def __init__(self, options: PresenceOptions | None = None) -> None:
        self._options = options or PresenceOptions()
        self._clock = self._options.clock
        self._local = LocalCounts()
        # user -> when their last stream closed; insertion order is time order, so pruning pops from the front
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __repr__(self) -> str:
        return f"<MemoryPresence online={len(self._local.counts)}>"

    def connected(self, user_id: str) -> None:
        self._local.up(user_id)

    def disconnected(self, user_id: str) -> None:
        if self._local.down(user_id) == 0:
            self._seen.pop(user_id, None)
            self._seen[user_id] = self._clock()
            self._prune()

    def _prune(self) -> None:
        horizon = self._clock() - self._options.last_seen_retention
        while self._seen:
            user, at = next(iter(self._seen.items()))
            if at > horizon:
                break
            del self._seen[user]

    async def status(self, user_id: str) -> PresenceStatus:
        count = self._local.counts.get(user_id, 0)
        if count:
            return PresenceStatus(True, count, self._clock())
        self._prune()
        return PresenceStatus(False, 0, self._seen.get(user_id))

    async def online_many(self, user_ids: Iterable[str]) -> dict[str, bool]:
        counts = self._local.counts
        return {user: user in counts for user in user_ids}

    def local_connections(self, user_id: str) -> int:
        return self._local.counts.get(user_id, 0)
