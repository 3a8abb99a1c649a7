"""The in-process queue for embedded mode: the Redis queue's semantics, kept in this process's memory.

It is not durable across restarts (nothing in embedded mode is); it does honour visibility timeouts, delayed
retries and dead letters so the same contract tests pass on both backends. Time comes from the injected clock.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from tidings.errors import BusUnavailable

from .base import DeadLetter, Lease, PushJob, Queue, QueueOptions, QueueStats


@dataclass(slots=True)
class _InFlight:
    job: PushJob
    consumer: str
    expires_at: float
    deliveries: int
    # The checkpoint: kept across reclaims, gone with the lease.
    answered: dict[str, str] = field(default_factory=dict)


class MemoryQueue(Queue):
    """Ready deque + in-flight leases + a heap of delayed retries, guarded by one asyncio.Condition."""

    interruptible = True  # _take is synchronous: a cancelled reserve has taken nothing

    def __init__(self, options: QueueOptions | None = None) -> None:
        self._options = options or QueueOptions()
        self._clock = self._options.clock
        self._ids = itertools.count(1)
        self._ready: deque[tuple[str, PushJob, int]] = deque()
        self._in_flight: dict[str, _InFlight] = {}
        self._delayed: list[tuple[float, int, PushJob]] = []
        self._dead: deque[DeadLetter] = deque(maxlen=self._options.dead_letter_max)
        self._changed = asyncio.Condition()
        self._closed = False
        self._beats: dict[str, float] = {}

    def __repr__(self) -> str:
        return (
            f"<MemoryQueue ready={len(self._ready)} in_flight={len(self._in_flight)} "
            f"delayed={len(self._delayed)} dead={len(self._dead)}>"
        )

    async def enqueue(self, job: PushJob, *, delay: float = 0.0) -> None:
        if len(self._ready) + len(self._delayed) >= self._options.max_jobs:
            # Backpressure, not silent loss and not unbounded memory: the publisher gets a 503 and retries.
            raise BusUnavailable(f"push queue full ({self._options.max_jobs} jobs waiting)")
        self._schedule(job, delay)
        async with self._changed:
            self._changed.notify_all()

    def _schedule(self, job: PushJob, delay: float) -> None:
        if delay > 0:
            heapq.heappush(self._delayed, (self._clock() + delay, next(self._ids), job))
        else:
            self._ready.append((str(next(self._ids)), job, 0))

    async def reserve(self, consumer: str, count: int = 1, block_seconds: float = 1.0) -> list[Lease]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block_seconds
        async with self._changed:
            while True:
                leases = self._take(consumer, count)
                remaining = deadline - loop.time()
                if leases or self._closed or remaining <= 0:
                    return leases
                # Sleep until something is enqueued or a delayed job / expired lease may be due.
                wake = self._seconds_to_next_due()
                timeout = remaining if wake is None else min(remaining, max(wake, 0.005))
                try:
                    async with asyncio.timeout(timeout):
                        await self._changed.wait()
                except TimeoutError:
                    pass

    def _take(self, consumer: str, count: int) -> list[Lease]:
        now = self._clock()
        while self._delayed and self._delayed[0][0] <= now:
            _, seq, job = heapq.heappop(self._delayed)
            self._ready.append((str(seq), job, 0))
        taken: list[Lease] = []
        # Expired leases first, as XAUTOCLAIM does: the job of a dead worker is the oldest work there is.
        for entry_id, held in list(self._in_flight.items()):
            if len(taken) >= count:
                break
            if held.expires_at <= now:
                held.consumer, held.expires_at = consumer, now + self._options.visibility_timeout
                held.deliveries += 1
                taken.append(Lease(entry_id, held.job, consumer, held.deliveries))
        while self._ready and len(taken) < count:
            entry_id, job, deliveries = self._ready.popleft()
            held = _InFlight(job, consumer, now + self._options.visibility_timeout, deliveries + 1)
            self._in_flight[entry_id] = held
            taken.append(Lease(entry_id, job, consumer, held.deliveries))
        return taken

    def _seconds_to_next_due(self) -> float | None:
        candidates = [when for when, _, _ in self._delayed[:1]]
        candidates += [held.expires_at for held in self._in_flight.values()]
        return min(candidates) - self._clock() if candidates else None

    async def ack(self, lease: Lease) -> None:
        self._in_flight.pop(lease.id, None)

    async def retry(self, lease: Lease, job: PushJob, delay: float) -> None:
        self._in_flight.pop(lease.id, None)
        self._schedule(job, delay)  # never refused: the job was already accepted
        async with self._changed:
            self._changed.notify_all()

    async def dead_letter(self, lease: Lease, job: PushJob, reason: str) -> None:
        self._in_flight.pop(lease.id, None)
        self._dead.appendleft(DeadLetter(lease.id, job, reason, self._clock()))

    async def checkpoint(self, lease: Lease, answers: Mapping[str, str]) -> None:
        held = self._in_flight.get(lease.id)
        if held is not None:
            held.answered.update(answers)

    async def answered(self, lease: Lease) -> dict[str, str]:
        held = self._in_flight.get(lease.id)
        return dict(held.answered) if held is not None else {}

    async def touch(self, lease: Lease) -> bool:
        held = self._in_flight.get(lease.id)
        if held is None or held.consumer != lease.consumer:
            return False
        held.expires_at = self._clock() + self._options.visibility_timeout
        return True

    async def beat(self, consumer: str) -> None:
        self._beats[consumer] = self._clock()

    async def live_workers(self, within: float) -> int:
        horizon = self._clock() - within
        return sum(1 for at in self._beats.values() if at >= horizon)

    async def stats(self) -> QueueStats:
        now = self._clock()
        due = sum(1 for when, _, _ in self._delayed if when <= now)
        return QueueStats(
            ready=len(self._ready),
            in_flight=len(self._in_flight),
            delayed=len(self._delayed) - due,
            due=due,
            dead=len(self._dead),
        )

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return list(itertools.islice(self._dead, limit))

    async def requeue_dead(self, limit: int = 1000) -> int:
        moved = 0
        while self._dead and moved < limit:
            letter = self._dead.pop()  # the oldest (newest are at the left)
            self._schedule(replace(letter.job, attempt=1), 0)
            moved += 1
        if moved:
            async with self._changed:
                self._changed.notify_all()
        return moved

    async def close(self) -> None:
        self._closed = True
        async with self._changed:
            self._changed.notify_all()
