"""When to try a device again: exponential backoff with full jitter, Retry-After honoured, FCM quota backoff.

Full jitter (delay drawn uniformly from [0, min(cap, base * 2^(attempt-1))]) spreads a burst of failures
from one provider outage over the whole window instead of re-synchronising them (AWS Architecture Blog,
"Exponential Backoff And Jitter"). A `Retry-After` from the provider is a floor: we never come back earlier
than asked. FCM's QUOTA_EXCEEDED asks for backoff starting at 60 s (Firebase "Best practices when sending FCM
messages at scale"), so a quota answer uses that base and never goes below it.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import dataclass, field

QUOTA_REASONS = frozenset({"QUOTA_EXCEEDED", "RESOURCE_EXHAUSTED"})


def is_quota(reason: str) -> bool:
    """Whether a provider reason says we are over our sending quota (FCM) rather than hitting a blip."""
    return any(word in reason.upper() for word in QUOTA_REASONS)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff for `retry_later` outcomes; `random` is injected so tests can pin the jitter."""

    max_attempts: int = 5
    # Seconds before the second attempt, before jitter. Not 1 s: a 5xx from a push service means overload or an
    # outage, and with the default 5 attempts a 1 s base gives up within ~15 s; 10 s spans up to 2.5 minutes.
    base: float = 10.0
    cap: float = 600.0  # no single wait longer than this (unless Retry-After asks for longer)
    quota_base: float = 60.0
    quota_cap: float = 3600.0
    retry_after_cap: float = 86_400.0  # a provider asking for more than a day is treated as a day
    random: Callable[[], float] = field(default=_random.random)

    def should_retry(self, attempt: int) -> bool:
        """Whether a job that just made attempt number `attempt` (1-based) may try again."""
        return attempt < self.max_attempts

    def delay(self, attempt: int, *, retry_after: float | None = None, reason: str = "") -> float:
        """Seconds to wait after failed attempt number `attempt` before the next one."""
        exponent = max(0, attempt - 1)
        if is_quota(reason):
            # Not full jitter: the quota floor is the point. Up to +50% spreads the workers' returns.
            step = min(self.quota_cap, self.quota_base * 2**exponent)
            backoff = step * (1.0 + 0.5 * self.random())
        else:
            backoff = self.random() * min(self.cap, self.base * 2**exponent)
        if retry_after is not None and retry_after > 0:
            return float(max(min(retry_after, self.retry_after_cap), backoff))
        return float(backoff)
