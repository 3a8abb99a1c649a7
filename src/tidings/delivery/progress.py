"""One job's answers as they arrive, flushed in batches while the job runs, so a worker that dies mid-job
leaves a checkpoint behind and the worker that reclaims the job skips every device already answered.

A flush (the worker's `flush` callable) writes the batch's bookkeeping — dead tokens disabled, delivery-log rows
and last_used_at, group-committed with other jobs' by GroupWriter — and then checkpoints the batch's final
answers in the queue (Redis: one script call). Rows go first: a crash between the two re-sends the batch and
logs it twice, rather than leaving pushes that went out unlogged. It returns the ids it checkpointed.

Budget. A flush starts when `every` answers wait (256), or `seconds` (1 s) after an answer arrived with no
flush due (the first of a batch, or the first after the previous flush ended), whichever comes first; one
flush at a time per job, answers arriving meanwhile join the next. So a job of N devices lasting T seconds
makes at most ceil(N / every) + T / seconds checkpoint writes however fast its sends complete — never one
round trip per send — and a job answered within `seconds` (the many small jobs) makes none: its ack clears
everything and its bookkeeping happens once at its end, as before. The timer is for a job whose answers
trickle or stall (slow devices), not for throughput: at 0.1 s it fired for 39 of 500 10-device jobs slowed by
a loaded machine (bench/worker.py), a write each that only a kill in that instant would have used.

After a kill the repeated sends are those not yet checkpointed: the ones in flight (at most the worker's
concurrency per provider) plus the answers waiting for a flush (fewer than `every`, or `seconds` worth) and
those of a flush under way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from tidings.delivery.dispatch import Attempt

logger = logging.getLogger("tidings.delivery")

Flush = Callable[[list[Attempt]], Awaitable[Sequence[str]]]


class Progress:
    """`add(attempt)` as each send is answered; `await close()` at the job's end returns the answers that were
    never flushed (the job's end writes them with its fate). `checkpointed` holds the device ids the queue
    has recorded; `targets` the devices this delivery of the job sends to."""

    def __init__(
        self, flush: Flush, targets: Sequence[str], *, every: int = 256, seconds: float = 1.0
    ) -> None:
        self.targets = tuple(targets)
        self.checkpointed: set[str] = set()
        self._flush = flush
        self._every = max(1, every)
        self._seconds = seconds
        self._pending: list[Attempt] = []
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    def add(self, attempt: Attempt) -> None:
        """One more answer (called by the dispatcher on the hot path: no await, no I/O)."""
        self._pending.append(attempt)
        if self._task is not None or self._closed:
            return  # the running flush looks at the pending answers when it is done
        if len(self._pending) >= self._every:
            self._start()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._seconds, self._start)

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is None and self._pending and not self._closed:
            self._task = asyncio.create_task(self._run(), name="tidings-checkpoint")

    async def _run(self) -> None:
        try:
            while self._pending and not self._closed:
                batch, self._pending = self._pending, []
                try:
                    self.checkpointed.update(await self._flush(batch))
                except Exception:  # an optimisation failed: a reclaim would resend this batch, nothing worse
                    logger.exception("checkpointing %d answers failed", len(batch))
                if len(self._pending) < self._every:
                    break
        finally:
            self._task = None
        if self._pending and not self._closed and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._seconds, self._start)

    async def close(self) -> list[Attempt]:
        """Flush no more; wait for a flush under way; the answers it never took."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            await self._task
        rest, self._pending = self._pending, []
        return rest

    def abort(self) -> None:
        """The job was cancelled: stop the timer and any flush. What was written stays written; `checkpointed`
        changes no more (a flush cancelled after its write leaves it short, which costs a duplicate at most)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            self._task.cancel()
