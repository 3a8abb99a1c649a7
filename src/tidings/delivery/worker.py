"""The delivery worker: takes push jobs from the queue, sends them, and decides each job's fate.

Shaped after arq's Worker (DESIGN §11): keyword-only settings, at most `max_jobs` jobs at once, `burst` mode
that returns once nothing is left to do now (tests, cron-style runs), a graceful stop that takes no new jobs
and gives running ones `grace_seconds` before they are cancelled and handed back to the queue, and counters
in `__repr__`.

A job's fate, after its sends (see dispatch.py for the per-device part):
- every device answered something final → ack;
- some devices answered `retry_later` → one narrowed job for just those devices, delayed by the retry policy
  (Retry-After honoured) — or, after `max_attempts`, a dead letter naming the reasons;
- the job itself could not be read or its devices looked up → the whole job is retried or dead-lettered.
Every attempt is written to the delivery log; rows and last_used_at of concurrent jobs are group-committed
(bookkeeping.py), and a job is acked only after its rows are written.

A job checkpoints its final answers in the queue as they arrive (progress.py: batched), so a job redelivered
after its worker died (`Lease.deliveries > 1`) skips the devices already answered and books their answers from
the checkpoint; a job cut short here (stopping, a worker error) books what it got and is handed back narrowed
to the devices still without a final answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from tidings import metrics
from tidings.delivery import report
from tidings.delivery.bookkeeping import DeliveryRecorder, GroupWriter
from tidings.delivery.dispatch import Attempt, Badges, DeviceLike, DeviceSource, Dispatcher
from tidings.delivery.gate import Gate
from tidings.delivery.log import DeliveryRecord
from tidings.delivery.progress import Progress, checkpoint, recover
from tidings.delivery.queue import Lease, PushJob, Queue
from tidings.delivery.retry import RetryPolicy, is_quota
from tidings.events import PushSpec
from tidings.push.base import Outcome, Provider

logger = logging.getLogger("tidings.delivery")


class Worker:
    """Drains a push Queue: `await run()`; stop with `stop()`, `await close()` or SIGTERM (handle_signals)."""

    def __init__(
        self,
        *,
        queue: Queue,
        devices: DeviceSource,
        providers: Mapping[str, Provider],
        log: DeliveryRecorder,
        concurrency: int = 64,
        max_attempts: int = 5,
        clock: Callable[[], float] = time.time,
        burst: bool = False,
        max_jobs: int = 10,
        send_timeout: float = 30.0,
        heartbeat_seconds: float = 20.0,
        grace_seconds: float = 10.0,
        poll_seconds: float = 1.0,
        retry_policy: RetryPolicy | None = None,
        consumer: str | None = None,
        handle_signals: bool = False,
        checkpoint_every: int = 64,
        checkpoint_seconds: float = 1.0,
        gate: Gate | None = None,
        badges: Badges | None = None,
    ) -> None:
        self.queue = queue
        self.gate = gate  # delivery policy (presence, preferences, quiet hours, debounce); None: send to all
        self.log = log
        self.clock = clock
        self.burst = burst
        self.max_jobs = max_jobs
        self.heartbeat_seconds = heartbeat_seconds
        self.grace_seconds = grace_seconds
        self.poll_seconds = poll_seconds
        self.checkpoint_every = checkpoint_every  # answers per checkpoint write (progress.py: the budget)...
        self.checkpoint_seconds = checkpoint_seconds  # ...or, at the latest, this long after an answer came
        self.policy = retry_policy or RetryPolicy(max_attempts=max_attempts)
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self.dispatcher = Dispatcher(
            devices=devices,
            providers=providers,
            concurrency=concurrency,
            send_timeout=send_timeout,
            clock=clock,
            badges=badges,
        )
        self.writer = GroupWriter(devices, log)
        self.counters: Counter[str] = Counter()
        self._running: dict[asyncio.Task[None], Lease] = {}
        self._progress: dict[str, Progress] = {}  # lease id → the progress of its sends, while it runs
        self._stopping = asyncio.Event()
        self._done = asyncio.Event()
        self._handle_signals = handle_signals
        self._started = False
        self._backoff = 0.5  # seconds before retrying a failed reserve; doubles up to 30 s

    def __repr__(self) -> str:
        c = self.counters
        sends = " ".join(f"{o.value}={c['send.' + o.value]}" for o in Outcome if c["send." + o.value])
        return (
            f"<Worker {self.consumer} j_complete={c['jobs.complete']} j_retried={c['jobs.retried']} "
            f"j_dead={c['jobs.dead']} j_returned={c['jobs.returned']} j_ongoing={len(self._running)}"
            f"{' ' + sends if sends else ''}"
            f"{' checkpoints=' + str(c['checkpoint.writes']) if c['checkpoint.writes'] else ''}"
            f"{' answered_skipped=' + str(c['checkpoint.skipped']) if c['checkpoint.skipped'] else ''}>"
        )

    # --- lifecycle ---------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Take no new jobs; `run()` returns once running jobs finish or the grace period ends."""
        self._stopping.set()

    async def close(self) -> None:
        """Stop and wait until `run()` has handed everything back (if it is running)."""
        self.stop()
        if self._started:
            await self._done.wait()

    async def run(self) -> None:
        """Process jobs until stopped (or, in burst mode, until nothing is left to do now)."""
        self._started = True
        self._done.clear()
        if self._handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
        heartbeat = asyncio.create_task(self._heartbeat(), name="tidings-worker-heartbeat")
        ticker = asyncio.create_task(self._tick(), name="tidings-worker-checkpoints")
        try:
            await self._loop()
        finally:
            if self._handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    asyncio.get_running_loop().remove_signal_handler(sig)
            await self._drain()  # leases keep being renewed meanwhile: the grace may outlast the timeout
            await self.writer.close()
            for task in (heartbeat, ticker):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._done.set()

    def _on_signal(self, sig: signal.Signals) -> None:
        running = len(self._running)
        logger.info("worker %s got %s: finishing %d running job(s)", self.consumer, sig.name, running)
        self.stop()

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            free = self.max_jobs - len(self._running)
            if free <= 0:
                await asyncio.wait(set(self._running), return_when=asyncio.FIRST_COMPLETED)
                continue
            leases = await self._reserve(free)
            for lease in leases:
                if self._stopping.is_set():
                    await self._give_back(lease)
                    continue
                task = asyncio.create_task(self._process(lease), name=f"push-{lease.job.event_id}")
                self._running[task] = lease
                task.add_done_callback(self._running.pop)
            if self.burst and not leases and not self._running and await self._nothing_left():
                return

    async def _nothing_left(self) -> bool:
        try:
            return (await self.queue.stats()).outstanding == 0
        except Exception:  # cannot tell: keep going (the next reserve backs off if the broker is down)
            logger.exception("reading queue stats failed")
            return False

    async def _reserve(self, free: int) -> list[Lease]:
        # Short blocks in burst mode: "empty" must be noticed quickly. Otherwise poll_seconds bounds how long
        # a stop waits for a reserve that cannot be cancelled safely (Redis: it could strand a taken entry).
        block = min(self.poll_seconds, 0.1) if self.burst else self.poll_seconds
        reserving = asyncio.ensure_future(self.queue.reserve(self.consumer, free, block_seconds=block))
        try:
            if self.queue.interruptible:
                stopping = asyncio.ensure_future(self._stopping.wait())
                await asyncio.wait({reserving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if not reserving.done():
                    reserving.cancel()
                    return []
            leases = await reserving
        except Exception:  # the broker is unreachable: wait and try again, a blip must not end the worker
            self.counters["reserve.errors"] += 1
            logger.exception("taking jobs from %r failed; retrying in %.1fs", self.queue, self._backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._backoff)
            self._backoff = min(self._backoff * 2, 30.0)
            return []
        self._backoff = 0.5
        return leases

    async def _drain(self) -> None:
        if not self._running:
            return
        tasks = set(self._running)
        _, late = await asyncio.wait(tasks, timeout=self.grace_seconds)
        leases = [self._running[t] for t in late]
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        for lease in leases:  # hand back now rather than make another worker wait out the visibility timeout
            await self._give_back(lease)

    async def _give_back(self, lease: Lease) -> None:
        job = await self._settle(lease)
        try:
            if job is None:  # every device answered for good: nothing to hand back
                await self.queue.ack(lease)
            else:
                await self.queue.retry(lease, job, 0)
            self.counters["jobs.returned"] += 1
        except Exception:  # it will be reclaimed after the visibility timeout anyway (its checkpoint kept)
            logger.exception("returning job %s to the queue failed", lease.job.event_id)

    async def _settle(self, lease: Lease) -> PushJob | None:
        """What is left of a job cut short: its answers so far are booked, and the job narrowed to the devices
        without a final answer (None: none left). The retry handing it back drops the checkpoint; the narrowing
        carries it over."""
        progress = self._progress.pop(lease.id, None)
        if progress is None:
            return lease.job
        if not progress.booked:
            progress.booked = True
            await self._book(lease.job, progress.answers)
        done = progress.final_ids()  # with the answers recovered from an earlier delivery's checkpoint
        if not done:
            return lease.job  # nothing answered: the job as it was (an audience stays an audience)
        left = tuple(i for i in progress.targets if i not in done)
        return replace(lease.job, device_ids=left) if left else None

    async def _heartbeat(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a gauge or a beat is not worth a log line per beat
                await self.queue.beat(self.consumer)
                metrics.push_queue_depth.set(await self.queue.depth())
            await asyncio.sleep(self.heartbeat_seconds)
            for lease in list(self._running.values()):
                try:
                    if not await self.queue.touch(lease):
                        logger.warning("lease on job %s was lost to another worker", lease.job.event_id)
                except Exception:
                    logger.exception("renewing the lease on job %s failed", lease.job.event_id)

    async def _tick(self) -> None:
        # One task for all running jobs rather than a timer per job: see progress.py for the budget.
        while True:
            await asyncio.sleep(self.checkpoint_seconds / 2)
            for progress in list(self._progress.values()):
                progress.tick()

    # --- one job -------------------------------------------------------------------------------------------

    async def _process(self, lease: Lease) -> None:
        try:
            await self._process_job(lease)
        except asyncio.CancelledError:
            raise  # stopping: _drain hands the job back, narrowed by its progress
        except Exception as exc:  # a bug here must not kill the worker; the job stays for another try
            logger.exception("job %s failed", lease.job.event_id)
            self.counters["jobs.errors"] += 1
            why = f"worker error: {type(exc).__name__}: {exc}"
            try:
                job = await self._settle(lease)
                if job is None:
                    await self.queue.ack(lease)
                else:
                    await self._retry_or_bury(lease, job, why, None)
            except Exception:  # the queue itself is failing: the lease expires and another worker takes it
                logger.exception(
                    "could not reschedule job %s; it returns after the visibility timeout", lease.id
                )
        self._progress.pop(lease.id, None)

    async def _process_job(self, lease: Lease) -> None:
        job = lease.job
        # A job whose entry was handed out far more often than it was attempted killed its worker each time.
        if lease.deliveries > self.policy.max_attempts + 1:
            why = f"redelivered {lease.deliveries} times: a worker died on it each time"
            await self._bury(lease, job, why)
            return
        try:
            spec = PushSpec.model_validate(job.spec)
        except ValueError as exc:
            await self._bury(lease, job, f"invalid push spec: {exc}")
            return
        try:
            devices, recovered = await self._targets(lease)
        except Exception as exc:  # the registry is down: the whole job waits and tries again
            logger.exception("looking up devices for job %s failed", job.event_id)
            await self._retry_or_bury(lease, job, f"device lookup failed: {type(exc).__name__}: {exc}", None)
            return
        policy_rows: list[DeliveryRecord] = []
        if self.gate is not None and devices and job.device_ids is None:  # a retry was decided already
            screened = await self.gate.screen(job, spec, devices)
            job, spec, devices, policy_rows = screened.job, screened.spec, screened.devices, screened.rows
        if not devices:
            if recovered or policy_rows:  # answered before the worker died is not "nobody to send to"
                await self._book(job, recovered, policy_rows)
            else:
                await self.writer.write((), [report.nobody_row(job, self.clock())])
            await self.queue.ack(lease)
            self.counters["jobs.complete"] += 1
            return
        attempts = await self._send(lease, spec, devices, recovered, policy_rows)
        retry = [a for a in attempts if a.result.outcome is Outcome.retry_later]
        if not retry:
            await self.queue.ack(lease)
            self.counters["jobs.complete"] += 1
            return
        narrowed = tuple(a.device.id for a in retry)
        reasons = sorted({f"{a.device.provider}: {a.result.reason or a.result.status}" for a in retry})
        await self._retry_or_bury(lease, replace(job, device_ids=narrowed), "; ".join(reasons), retry)

    async def _targets(self, lease: Lease) -> tuple[list[DeviceLike], list[Attempt]]:
        """The devices to send to, and the answers an earlier delivery of the entry checkpointed for others."""
        devices = await self.dispatcher.resolve(lease.job)
        return await recover(self.queue, lease, devices, self.counters)

    async def _send(
        self,
        lease: Lease,
        spec: PushSpec,
        devices: list[DeviceLike],
        recovered: list[Attempt],
        policy_rows: Sequence[DeliveryRecord] = (),
    ) -> list[Attempt]:
        """Send, checkpointing answers as they arrive; then book them all (and the recovered ones) at once."""
        job = lease.job
        progress = Progress(
            lambda batch: checkpoint(self.queue, lease, batch, self.counters),
            [d.id for d in devices],
            every=self.checkpoint_every,
        )
        progress.answers.extend(recovered)
        self._progress[lease.id] = progress
        try:
            attempts = await self.dispatcher.send(job, spec, devices, on_answer=progress.add)
            await progress.close()
        finally:
            progress.abort()  # cancelled (stopping): no checkpoint after this; a no-op once closed
        self.dispatcher.alert_credentials(attempts)
        report.count(self.counters, attempts)
        progress.booked = True
        await self._book(
            job, progress.answers, policy_rows
        )  # recovered answers, then every answer of this one
        return attempts

    async def _book(
        self, job: PushJob, attempts: Sequence[Attempt], policy_rows: Sequence[DeliveryRecord] = ()
    ) -> None:
        """The bookkeeping of answers: dead tokens disabled, log rows (the policy's skips first) and last_used_at
        written in one group commit."""
        await self.dispatcher.disable_dead(attempts)
        delivered = [a.device.id for a in attempts if a.result.outcome is Outcome.delivered]
        await self.writer.write(delivered, [*policy_rows, *report.attempt_rows(job, attempts, self.clock())])

    async def _retry_or_bury(
        self, lease: Lease, job: PushJob, reason: str, retry: Sequence[Attempt] | None
    ) -> None:
        if not self.policy.should_retry(job.attempt):
            await self._bury(lease, job, f"gave up after {job.attempt} attempt(s): {reason}")
            return
        retry_after = max((a.result.retry_after or 0.0 for a in retry or ()), default=0.0)
        quota = any(is_quota(a.result.reason) for a in retry or ())
        delay = self.policy.delay(
            job.attempt, retry_after=retry_after or None, reason="QUOTA_EXCEEDED" if quota else ""
        )
        await self.queue.retry(lease, job.next_attempt(job.device_ids), delay)
        self.counters["jobs.retried"] += 1
        logger.info("job %s attempt %d: retrying in %.1fs (%s)", job.event_id, job.attempt, delay, reason)

    async def _bury(self, lease: Lease, job: PushJob, reason: str) -> None:
        await self.queue.dead_letter(lease, job, reason)
        self.counters["jobs.dead"] += 1
        logger.warning("job %s dead-lettered: %s", job.event_id, reason)
