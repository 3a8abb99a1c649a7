"""Per-user limit on device registrations: a token bucket per user, in process memory, with an injected clock.

A bucket holds `rate_per_minute` registrations and refills continuously, so a user may burst up to the limit
and then registers at the steady rate. With several server processes each enforces its own bucket (the limit
is per process); that bounds abuse without a shared store on the registration path.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateLimited", "RegistrationLimiter"]


@dataclass(frozen=True, slots=True)
class RateLimited:
    """A refusal: try again after `retry_after` seconds (whole seconds, for the Retry-After header)."""

    retry_after: int


class RegistrationLimiter:
    """`check(user_id)` returns None when allowed (and spends one token), or a RateLimited refusal."""

    def __init__(
        self,
        rate_per_minute: int,
        *,
        clock: Callable[[], float] = time.time,
        max_users: int = 100_000,
    ) -> None:
        self.rate_per_minute = rate_per_minute  # 0 disables the limit
        self._clock = clock
        self._max_users = max_users
        self._buckets: dict[str, tuple[float, float]] = {}  # user -> (tokens, at)

    def check(self, user_id: str) -> RateLimited | None:
        if self.rate_per_minute <= 0:
            return None
        now = self._clock()
        capacity = float(self.rate_per_minute)
        per_second = capacity / 60.0
        tokens, at = self._buckets.get(user_id, (capacity, now))
        tokens = min(capacity, tokens + max(0.0, now - at) * per_second)
        if tokens < 1.0:
            self._buckets[user_id] = (tokens, now)
            return RateLimited(max(1, math.ceil((1.0 - tokens) / per_second)))
        self._buckets[user_id] = (tokens - 1.0, now)
        if len(self._buckets) > self._max_users:
            self._evict(now, capacity, per_second)
        return None

    def _evict(self, now: float, capacity: float, per_second: float) -> None:
        # Forget the users with the most tokens first: a refilled bucket is the same as a missing one, and the
        # users being limited right now (empty buckets) are the last we want to forget.
        def level(user: str) -> float:
            tokens, at = self._buckets[user]
            return min(capacity, tokens + (now - at) * per_second)

        keep = self._max_users * 9 // 10  # leave headroom so eviction stays rare
        for user in sorted(self._buckets, key=level, reverse=True)[: len(self._buckets) - keep]:
            del self._buckets[user]
