"""The push job queue's contract: what a job is, and the small ABC every backend keeps.

Delivery is at-least-once: a job is removed only when a worker acks it, retries it (ack + schedule,
atomically) or dead-letters it. A job reserved by a worker that dies becomes visible again after the
visibility timeout, so nothing accepted is lost. While it works, a worker checkpoints the final answers its
sends got on the lease's entry (`checkpoint`: device id → a short record of the answer); a redelivered entry's
worker reads them (`answered`), skips those devices and books their answers, so a crash repeats only the sends
that were in flight — sent, not yet checkpointed (providers derive `apns-id` from event id + device so such a
repeat is recognisable). A checkpoint belongs to one queue entry: finishing the lease deletes it in the same
atomic step, and a retry is a new entry with its own.

Backends (`memory.py`, `redis.py`) are chosen by URL in this package's `create_queue`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from tidings.clock import Clock, system_clock


@dataclass(frozen=True, slots=True)
class PushJob:
    """One event's push work: who it is for, what to send, and which attempt this is."""

    event_id: str
    event_type: str
    audience: Mapping[str, Any]  # {"users": [...], "roles": [...], "topics": [...], "broadcast": bool}
    spec: Mapping[str, Any]  # PushSpec.model_dump(exclude_none=True)
    data: Mapping[str, Any]  # the event's data
    attempt: int = 1
    device_ids: tuple[str, ...] | None = None  # a retry targets only the devices that asked to be retried
    # Delivery policy (scope, critical, debounce window, released/merged counts): tidings.delivery.gate reads
    # it; None for a job without any, which the gate passes through untouched.
    policy: Mapping[str, Any] | None = None

    def to_bytes(self) -> bytes:
        body = {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "audience": self.audience,
            "spec": self.spec,
            "data": self.data,
            "attempt": self.attempt,
            "device_ids": list(self.device_ids) if self.device_ids is not None else None,
        }
        if self.policy:
            body["policy"] = self.policy
        return orjson.dumps(body)

    @classmethod
    def from_bytes(cls, raw: bytes | str) -> PushJob:
        obj = orjson.loads(raw)
        ids = obj.get("device_ids")
        return cls(
            event_id=str(obj["event_id"]),
            event_type=str(obj["event_type"]),
            audience=obj.get("audience") or {},
            spec=obj.get("spec") or {},
            data=obj.get("data") or {},
            attempt=int(obj.get("attempt", 1)),
            device_ids=tuple(str(i) for i in ids) if ids is not None else None,
            policy=obj.get("policy") or None,
        )

    def next_attempt(self, device_ids: tuple[str, ...] | None) -> PushJob:
        """The job a retry enqueues: the next attempt number, narrowed to the devices that asked for it."""
        return PushJob(
            self.event_id,
            self.event_type,
            self.audience,
            self.spec,
            self.data,
            self.attempt + 1,
            device_ids,
            self.policy,
        )


@dataclass(frozen=True, slots=True)
class Lease:
    """A reserved job. `deliveries` counts how often this queue entry was handed out (> 1 after a reclaim)."""

    id: str
    job: PushJob
    consumer: str
    deliveries: int = 1


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A job given up on, and why."""

    id: str
    job: PushJob
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class QueueStats:
    ready: int  # waiting to be reserved
    in_flight: int  # reserved, not yet acked (includes leases of dead workers awaiting reclaim)
    delayed: int  # scheduled retries not yet due
    due: int  # scheduled retries whose time has come (moved to ready by the next reserve)
    dead: int

    @property
    def outstanding(self) -> int:
        """Jobs that still need a worker now (burst mode stops when this is 0; future retries excluded)."""
        return self.ready + self.in_flight + self.due


@dataclass(slots=True)
class QueueOptions:
    visibility_timeout: float = 60.0  # seconds a lease may stay unacked before another worker reclaims it
    dead_letter_max: int = 100_000  # dead letters are for inspection; cap them rather than grow forever
    max_jobs: int = 100_000  # memory queue only: waiting jobs beyond this are refused (BusUnavailable)
    # Redis only: a checkpoint is deleted with its lease; the expiry (renewed by every checkpoint write) only
    # collects one whose entry vanished some other way (XDEL by hand). A checkpoint that expires under a lease
    # still waiting for a worker costs duplicates, never a lost push: a day leaves ample room.
    checkpoint_ttl: float = 86_400.0
    clock: Clock = field(default=system_clock)


class Queue(ABC):
    """A durable, at-least-once queue of PushJobs shared by workers."""

    # Whether a reserve() may be cancelled mid-wait without stranding a job it already took; lets a stopping
    # worker return at once instead of waiting out the reserve's block.
    interruptible: ClassVar[bool] = False

    @abstractmethod
    async def enqueue(self, job: PushJob, *, delay: float = 0.0) -> None:
        """Add a job, ready now or after `delay` seconds; BusUnavailable when it cannot be accepted."""

    @abstractmethod
    async def reserve(self, consumer: str, count: int = 1, block_seconds: float = 1.0) -> list[Lease]:
        """Take up to `count` jobs (reclaimed expired leases first), waiting up to `block_seconds` for one."""

    @abstractmethod
    async def ack(self, lease: Lease) -> None:
        """The job is done; remove it."""

    @abstractmethod
    async def retry(self, lease: Lease, job: PushJob, delay: float) -> None:
        """Atomically finish `lease` and schedule `job` (often a narrowed next attempt) in `delay` s."""

    @abstractmethod
    async def dead_letter(self, lease: Lease, job: PushJob, reason: str) -> None:
        """Atomically finish `lease` and keep `job` with `reason` in the dead-letter list."""

    @abstractmethod
    async def checkpoint(self, lease: Lease, answers: Mapping[str, str]) -> None:
        """Record final answers (device id → record) on the leased entry; a no-op once it is finished."""

    @abstractmethod
    async def answered(self, lease: Lease) -> dict[str, str]:
        """The answers checkpointed on the lease's entry by any delivery of it; empty once it is finished."""

    @abstractmethod
    async def touch(self, lease: Lease) -> bool:
        """Renew a lease that is still being worked on; False when it was already reclaimed or finished."""

    @abstractmethod
    async def stats(self) -> QueueStats:
        """Counts by state."""

    @abstractmethod
    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The most recent dead letters, newest first."""

    @abstractmethod
    async def requeue_dead(self, limit: int = 1000) -> int:
        """Put up to `limit` dead letters (oldest first) back as ready jobs at attempt 1; returns how many."""

    @abstractmethod
    async def beat(self, consumer: str) -> None:
        """Record that worker `consumer` is alive (readiness checks read it)."""

    @abstractmethod
    async def live_workers(self, within: float) -> int:
        """How many workers beat in the last `within` seconds."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections; the queue's contents stay (for durable backends)."""

    async def depth(self) -> int:
        """Jobs not yet finished: ready, in flight and scheduled."""
        s = await self.stats()
        return s.ready + s.in_flight + s.delayed + s.due
