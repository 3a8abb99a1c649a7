"""The in-process bus: ids from the clock, delivery by direct call, history in ring buffers."""

from __future__ import annotations

from collections.abc import Sequence

from ..clock import Clock, system_clock
from ..wire import tail_channels, with_id
from .base import Bus, Deliver
from .history import ChannelHistory


class MemoryBus(Bus):
    """For one process. Ids are `<ms>-<seq>` like Redis stream ids, so clients see one format everywhere."""

    def __init__(self, *, max_events: int = 1000, max_age: float = 600, clock: Clock = system_clock):
        self._clock = clock
        self._deliver: Deliver | None = None
        self._last = (0, 0)
        self._history = ChannelHistory(max_events=max_events, max_age=max_age, clock=clock)
        self._revoked: dict[str, float] = {}
        self._users_revoked: dict[str, tuple[float, float]] = {}  # user id → (revoked at, remembered until)

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def stop(self) -> None:
        self._deliver = None

    async def publish(self, tails: Sequence[bytes]) -> list[str]:
        ids = []
        for tail in tails:
            key = self._next_key()
            event_id = f"{key[0]}-{key[1]}"
            message = with_id(event_id, tail)
            self._history.append(key, tail_channels(tail), message)
            self._history.note_assigned(key)
            if self._deliver is not None:
                self._deliver(message)
            ids.append(event_id)
        return ids

    def _next_key(self) -> tuple[int, int]:
        ms = int(self._clock() * 1000)
        last_ms, last_seq = self._last
        self._last = (ms, 0) if ms > last_ms else (last_ms, last_seq + 1)
        return self._last

    async def history(self, after: str, channels: Sequence[str]) -> list[bytes] | None:
        return self._history.since(after, channels)

    def expire_history(self) -> int:
        return self._history.expire()

    async def mark_revoked(self, jti: str, until: float) -> None:
        now = self._clock()
        self._revoked = {k: t for k, t in self._revoked.items() if t > now}  # forget expired ones as we go
        self._revoked[jti] = until

    async def is_revoked(self, jti: str) -> bool:
        return self._revoked.get(jti, 0.0) > self._clock()

    async def mark_user_revoked(self, user_id: str, at: float, until: float) -> None:
        now = self._clock()
        self._users_revoked = {k: v for k, v in self._users_revoked.items() if v[1] > now}
        self._users_revoked[user_id] = (at, until)

    async def is_token_revoked(self, user_id: str, jti: str | None, issued_at: float | None) -> bool:
        if jti is not None and await self.is_revoked(jti):
            return True
        at, until = self._users_revoked.get(user_id, (0.0, 0.0))
        return until > self._clock() and (issued_at is None or issued_at <= at)

    async def healthy(self) -> bool:
        return True
