"""Debounce and coalescing windows: a leading + trailing edge throttle per opaque key, and its flusher.

For one key (the integrator uses (audience, scope) for streams and (user, scope) for pushes):

- An event in a quiet period is delivered at once (the leading edge) and opens a window of `window` seconds.
- Events inside an open window are merged into it (nothing delivered). When the window closes, if anything
  was merged, ONE trailing delivery carries the merged result, and a new window opens at that moment, so the
  next event is held too. A window that closes with nothing merged simply ends: the next event leads.
- Deliveries for one key are therefore never closer than `window`: a delivery always opens a window, and
  nothing is delivered while one is open.
- The window slides only if asked: with `max_wait > window`, each held event pushes the close to
  `now + window`, but never past `start + max_wait` — a held event waits at most `max_wait`. The default,
  `max_wait = window`, is a fixed window (a throttle: "one stream nudge a second").
- Nothing is lost at a window edge: an event arriving when the window is due but not yet claimed is
  delivered at once together with everything held (it is then the leading edge of a new window), and the
  claim finds nothing; if the claim came first, the event is held in the window the claim opened.
- A window's length and `max_wait` are fixed when it opens; later offers' values apply to later windows.

Windows due to close are claimed by `claim_due`, atomically, so exactly one process hands out each trailing
edge; a claim is a lease: not acked within `lease` seconds (its process died mid-delivery), it is handed out
again (at-least-once, at most `max_attempts` times). `DebounceFlusher` runs claim -> deliver -> ack on a
poll period. Times are the injected clock's, in whole milliseconds (as Redis stores them).
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..clock import Clock, system_clock
from .debounce_merge import Merged

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger("tidings.policy")

__all__ = ["Closed", "DebounceFlusher", "DebounceOptions", "DebounceStore", "Merged", "Offer"]


@dataclass(frozen=True, slots=True)
class Offer:
    """The answer to one event: deliver `merged` now (the leading edge), or held for the trailing edge."""

    deliver: bool
    merged: Merged | None  # when `deliver`: the event alone, or folded into a window that was due
    deadline: float  # when the key's current window closes (epoch seconds)


@dataclass(frozen=True, slots=True)
class Closed:
    """A window's trailing edge, claimed for delivery; `ack` it once delivered."""

    key: str
    merged: Merged
    closed_at: float  # when it was claimed
    token: str
    attempt: int  # 1, or more when handed out again after an unacked lease


@dataclass(frozen=True, slots=True)
class DebounceOptions:
    """Budgets and timing shared by every window of a store."""

    max_list_items: int = 100  # per list field of a merged window (the newest kept)
    max_ids: int = 100  # event ids kept per window (the newest; the count stays exact)
    lease: float = 30.0  # a claimed trailing edge not acked within this is handed out again
    max_attempts: int = 5  # hand-outs of one trailing edge before it is dropped (and logged)
    key_slack: float = 3600.0  # Redis: a window key outlives its max_wait by this (unclaimed windows die)
    clock: Clock = system_clock

    def __post_init__(self) -> None:
        if min(self.max_list_items, self.max_ids, self.max_attempts) < 1 or self.lease <= 0:
            raise ValueError("debounce budgets must be >= 1 and the lease positive")

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock = system_clock) -> DebounceOptions:
        return cls(
            max_list_items=settings.debounce_max_list_items,
            max_ids=settings.debounce_max_ids,
            lease=settings.debounce_lease_seconds,
            clock=clock,
        )


def to_ms(seconds: float) -> int:
    return round(seconds * 1000)


def window_ms(window: float, max_wait: float | None) -> tuple[int, int]:
    """Validated (window, max_wait) in ms; max_wait defaults to the window (no sliding)."""
    w = to_ms(window)
    mw = w if max_wait is None else to_ms(max_wait)
    if w <= 0 or mw < w:
        raise ValueError(f"debounce window must be > 0 and max_wait >= window (got {window}, {max_wait})")
    return w, mw


class DebounceStore(ABC):
    """Windows keyed by an opaque string; one atomic step per offer and per claim."""

    @abstractmethod
    async def offer(
        self,
        key: str,
        event_id: str,
        data: Mapping[str, Any],
        *,
        window: float,
        max_wait: float | None = None,
    ) -> Offer:
        """Deliver now (leading edge) or hold and merge into the key's open window."""

    @abstractmethod
    async def claim_due(self, now: float | None = None, limit: int = 100) -> list[Closed]:
        """Close up to `limit` windows due by `now` that hold events (and unacked leases that ran out)."""

    @abstractmethod
    async def ack(self, closed: Closed) -> None:
        """The trailing edge was delivered: forget its lease."""

    async def close(self) -> None:
        """Release connections this store opened."""
        return None


Deliver = Callable[[Closed], Awaitable[None]]


class DebounceFlusher:
    """Hands every window that closes to `deliver`, then acks it; run by one task per process.

    Several processes may run one each: claims are atomic, so each trailing edge goes to one of them. A
    `deliver` that raises leaves the lease unacked, so the edge is handed out again after `lease` seconds.
    A trailing edge is at most `poll_seconds` late.
    """

    def __init__(
        self,
        store: DebounceStore,
        deliver: Deliver,
        *,
        poll_seconds: float = 0.1,
        batch: int = 100,
        clock: Clock | None = None,
    ) -> None:
        self._store = store
        self._deliver = deliver
        self._poll = poll_seconds
        self._batch = batch
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.failed = 0

    def __repr__(self) -> str:
        return f"<DebounceFlusher delivered={self.delivered} failed={self.failed}>"

    async def run_once(self, max_rounds: int = 10) -> int:
        """Claim and deliver what is due now (a few batches at most); returns how many were delivered."""
        done = 0
        for _ in range(max_rounds):
            now = self._clock() if self._clock is not None else None
            closed = await self._store.claim_due(now, self._batch)
            for item in closed:
                try:
                    await self._deliver(item)
                except Exception:  # one bad delivery must not stall the others; its lease brings it back
                    self.failed += 1
                    log.exception("debounce: delivering the window of %r failed", item.key)
                    continue
                await self._store.ack(item)
                self.delivered += 1
                done += 1
            if len(closed) < self._batch:
                break
        return done

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="debounce-flusher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=5.0)
            if not done:
                log.error("debounce: the flusher did not stop within 5s")

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # Redis down: try again next period rather than stop closing windows
                log.exception("debounce: claiming due windows failed")
            await asyncio.sleep(self._poll)
