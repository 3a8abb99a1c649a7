"""One job's answers as they arrive, checkpointed in the queue in batches while the job runs, so a worker that
dies mid-job leaves a record behind: the worker that reclaims the job skips every device already answered and
books it (delivery-log row, last_used_at, dead token) from the record instead of sending again.

The checkpoint is the queue's only: the database bookkeeping stays one group-committed write per job at its
end (bookkeeping.py). Writing it per batch instead was measured on SQLite at 2-3x the per-device cost of one
write per job (an INSERT and an UPDATE per batch of 64-256), far more than the checkpoint itself (~1 µs per
device to format, and one Redis script call with one argument per batch).

Budget. A flush starts when `every` final answers wait (64), or at a tick of the worker (every
`checkpoint_seconds / 2`, 0.5 s) that finds answers which were already waiting at the previous tick; one flush
at a time per job, answers arriving meanwhile join the next. So no answer waits for its write longer than
`checkpoint_seconds` (plus a write under way), a job of N devices lasting T seconds makes at most
ceil(N / every) + 2T / checkpoint_seconds queue writes
however fast its sends complete — never one round trip per send — and a job answered within one tick (the
many small jobs) makes none: its ack clears everything. The ticks are for a job whose answers trickle or
stall (slow devices), not for throughput; they cost the hot path nothing (no timer per job or per answer: a
first version's timer per batch added ~15% function calls to a one-device job).

After a kill the repeated sends are those not yet checkpointed: the ones in flight (at most the worker's
concurrency per provider) plus the answers waiting for a flush (fewer than `every`, or `checkpoint_seconds` worth) and
those of a flush under way (one round trip). A `retry_later` answer is never checkpointed: it needs a send.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence

from tidings.delivery.dispatch import Attempt, DeviceLike
from tidings.delivery.queue import Lease, Queue
from tidings.push.base import Outcome, Result

logger = logging.getLogger("tidings.delivery")

Flush = Callable[[list[Attempt]], Awaitable[None]]
# A checkpoint record is kept in Redis per device: provider reasons can be long exception texts.
_REASON_MAX = 120
_RETRY_LATER = Outcome.retry_later  # bound once: add() is on the hot path


def record_of(attempt: Attempt) -> str:
    """A final answer as the checkpoint keeps it: `outcome|status|sent_at|reason` (sent_at for dead tokens).
    About 1 µs per device (a cache of formatted records measured 0.2 µs better: not worth its state)."""
    r = attempt.result
    sent_at = repr(attempt.sent_at) if r.outcome is Outcome.dead_token and attempt.sent_at else ""
    return f"{r.outcome.value}|{r.status or ''}|{sent_at}|{r.reason[:_REASON_MAX]}"


def attempt_of(device: DeviceLike, record: str) -> Attempt | None:
    """The answer a worker that died got for `device`, back from its checkpoint record (no latency known);
    None for a record this version cannot read (the device is sent to again)."""
    try:
        outcome, status, sent_at, reason = record.split("|", 3)
        result = Result(Outcome(outcome), reason, int(status) if status else None)
        return Attempt(device, result, None, float(sent_at) if sent_at else None)
    except ValueError:
        return None


def split_answered(
    devices: Sequence[DeviceLike], answered: Mapping[str, str]
) -> tuple[list[DeviceLike], list[Attempt]]:
    """A redelivered job's devices: those still to send to, and the answers recovered for the others."""
    left: list[DeviceLike] = []
    recovered: list[Attempt] = []
    for device in devices:
        record = answered.get(device.id)
        attempt = attempt_of(device, record) if record is not None else None
        if attempt is None:
            left.append(device)
        else:
            recovered.append(attempt)
    return left, recovered


async def recover(
    queue: Queue, lease: Lease, devices: list[DeviceLike], counters: Counter[str]
) -> tuple[list[DeviceLike], list[Attempt]]:
    """For a reclaimed entry: the devices still to send to, and the answers checkpointed for the others."""
    if lease.deliveries == 1 or not devices:
        return devices, []
    answered = await queue.answered(lease)
    if not answered:
        return devices, []
    left, recovered = split_answered(devices, answered)
    counters["checkpoint.skipped"] += len(recovered)
    logger.info("job %s redelivered: %d device(s) already answered", lease.job.event_id, len(recovered))
    return left, recovered


async def checkpoint(queue: Queue, lease: Lease, batch: Sequence[Attempt], counters: Counter[str]) -> None:
    """Record a batch of final answers on the lease (a failure costs duplicates only if this worker dies)."""
    try:
        await queue.checkpoint(lease, {a.device.id: record_of(a) for a in batch})
    except Exception:
        counters["checkpoint.errors"] += 1
        logger.warning("checkpointing job %s failed", lease.job.event_id, exc_info=True)
        return
    counters["checkpoint.writes"] += 1


class Progress:
    """`add(attempt)` as each send is answered; `await close()` at the job's end. `answers` holds every answer
    so far, `targets` the devices this delivery of the job sends to."""

    def __init__(self, flush: Flush, targets: Sequence[str], *, every: int = 64) -> None:
        self.targets = tuple(targets)
        self.answers: list[Attempt] = []
        self.booked = False  # set once the job's bookkeeping of `answers` has started
        self._flush = flush
        self._every = max(1, every)
        self._pending: list[Attempt] = []
        self._task: asyncio.Task[None] | None = None
        self._waited = False  # answers were pending at the last tick
        self._closed = False

    def add(self, attempt: Attempt) -> None:
        """One more answer (called by the dispatcher on the hot path: no await, no I/O)."""
        self.answers.append(attempt)
        if attempt.result.outcome is _RETRY_LATER or self._closed:
            return
        self._pending.append(attempt)
        if self._task is None and len(self._pending) >= self._every:
            self._start()  # (a running flush looks at the pending answers when it is done)

    def tick(self) -> None:
        """The worker's periodic call: answers that were already waiting at the previous tick are flushed."""
        if self._waited and self._pending and self._task is None:
            self._start()
            self._waited = False
        else:
            self._waited = bool(self._pending)

    def final_ids(self) -> set[str]:
        """The devices answered for good so far (checkpointed or not)."""
        return {a.device.id for a in self.answers if a.result.outcome is not _RETRY_LATER}

    def _start(self) -> None:
        if self._task is None and self._pending and not self._closed:
            self._task = asyncio.create_task(self._run(), name="tidings-checkpoint")

    async def _run(self) -> None:
        try:
            while self._pending and not self._closed:
                batch, self._pending = self._pending, []
                try:
                    await self._flush(batch)
                except Exception:  # an optimisation failed: a reclaim would resend this batch, nothing worse
                    logger.exception("checkpointing %d answers failed", len(batch))
                if len(self._pending) < self._every:
                    break
        finally:
            self._task = None

    async def close(self) -> None:
        """Checkpoint no more (the job is about to be finished); wait for a write under way."""
        self._closed = True
        self._pending = []
        if self._task is not None:
            await self._task

    def abort(self) -> None:
        """The job was cancelled: stop any write. `answers` stays for the hand-back."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
