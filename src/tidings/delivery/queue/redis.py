"""The Redis Streams queue: one stream of ready jobs read through a consumer group, a sorted set of delayed
retries, and a capped dead-letter stream.

    {prefix}:push:jobs     stream, group "workers"; entries are deleted when acked: XLEN = ready + in flight
    {prefix}:push:delayed  zset of scheduled retries (score = due time, member = 16-char nonce + job bytes)
    {prefix}:push:dead     stream of (job, reason, at), capped at about `dead_letter_max` entries
    {prefix}:push:answered:{entry id}  the answers checkpointed on that entry (see base.py), as JSON items

A lease left unacked longer than the visibility timeout (its worker died) is taken over with XAUTOCLAIM by
the next worker that reserves. A live worker renews its leases with `touch` (XCLAIM to itself, only if it
still owns the entry) so a slow job is not stolen. Due retries are moved back into the stream by whichever
worker reserves next, in one Lua script so two workers cannot both move the same retry. Finishing a lease
(ack, retry, dead-letter) is one MULTI so a crash between the two halves cannot lose or duplicate the job;
it deletes the entry's checkpoint too. A checkpoint is written by a script that first checks the entry is
still pending, so a late write from a worker whose lease was finished elsewhere cannot leave an orphan.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from tidings.errors import redis_errors

from .base import DeadLetter, Lease, PushJob, Queue, QueueOptions, QueueStats

GROUP = "workers"
_PROMOTE_BATCH = 100
CONSUMER_IDLE_SECONDS = 86_400.0

_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'job', string.sub(member, 17))
  redis.call('ZREM', KEYS[1], member)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nxt == 0 then return {#due, false} end
return {#due, nxt[2]}
"""

# Renew only a lease this consumer still owns: a blind XCLAIM would steal back a job another worker reclaimed.
_TOUCH = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #p == 0 then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
"""

# Add to an entry's checkpoint only while the entry is pending (not yet acked, retried or dead-lettered).
# The checkpoint is a string of JSON array items, each write appending `,"id1","record1","id2",...`: one
# argument to encode rather than two per device (the client's CPU), and ~57 bytes of Redis memory per device
# for an APNs success (32-char id, record `delivered|200||`; MEMORY USAGE after 4,000 devices in 63 writes).
_CHECKPOINT = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1) == 0 then return 0 end
redis.call('APPEND', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""

# Move one dead letter back only if this caller deleted it: two operators redriving at once move it once.
_REDRIVE = """
if redis.call('XDEL', KEYS[1], ARGV[1]) == 1 then
  redis.call('XADD', KEYS[2], '*', 'job', ARGV[2])
  return 1
end
return 0
"""


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _readable(raw: bytes) -> PushJob:
    """A dead letter's job for display, even when it was dead-lettered for being unreadable."""
    try:
        return PushJob.from_bytes(raw)
    except (ValueError, KeyError, TypeError):
        return PushJob("?", "?", {}, {}, {"raw": raw[:200].decode(errors="replace")})


class RedisQueue(Queue):
    """Redis Streams + consumer group; safe to share between any number of worker processes."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "tidings",
        options: QueueOptions | None = None,
        client: Redis | None = None,
    ) -> None:
        self._options = options or QueueOptions()
        self._clock = self._options.clock
        self._owns_client = client is None
        self._redis: Redis = client if client is not None else Redis.from_url(url, decode_responses=False)
        self.stream = f"{prefix}:push:jobs"
        self.delayed_key = f"{prefix}:push:delayed"
        self.dead_key = f"{prefix}:push:dead"
        self.workers_key = f"{prefix}:push:workers"  # zset: worker name → time of its last heartbeat
        self._promote = self._redis.register_script(_PROMOTE)
        self._touch = self._redis.register_script(_TOUCH)
        self._redrive = self._redis.register_script(_REDRIVE)
        self._checkpoint = self._redis.register_script(_CHECKPOINT)
        self._answered_prefix = f"{prefix}:push:answered:"
        self._group_ready = False
        self._claim_cursor = "0-0"
        self._poll_seconds = min(1.0, max(0.05, self._options.visibility_timeout / 4))

    def __repr__(self) -> str:
        return f"<RedisQueue stream={self.stream!r}>"

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            # From id 0, not $: jobs enqueued before the first worker ever started must still be delivered.
            await self._redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True
        await self.forget_idle_consumers()

    async def forget_idle_consumers(self, idle_seconds: float = CONSUMER_IDLE_SECONDS) -> int:
        """Drop group members that hold nothing and were last seen long ago.

        Every worker process is a new consumer name (host-pid-...), and Redis keeps a consumer in the group
        forever; without this the group grows by one member per restart.
        """
        consumers: Any = await self._redis.xinfo_consumers(self.stream, GROUP)
        gone = 0
        for consumer in consumers:
            if int(consumer["pending"]) == 0 and int(consumer["idle"]) > idle_seconds * 1000:
                await self._redis.xgroup_delconsumer(self.stream, GROUP, consumer["name"])
                gone += 1
        return gone

    async def enqueue(self, job: PushJob, *, delay: float = 0.0) -> None:
        with redis_errors("push queue unavailable"):  # the publisher's boundary: the API answers 503
            if delay > 0:
                await self._redis.zadd(self.delayed_key, {self._member(job): self._clock() + delay})
            else:
                await self._redis.xadd(self.stream, {"job": job.to_bytes()})

    @staticmethod
    def _member(job: PushJob) -> bytes:
        # The nonce keeps two identical retries (same event, attempt and devices) from collapsing into one.
        return os.urandom(8).hex().encode() + job.to_bytes()

    async def reserve(self, consumer: str, count: int = 1, block_seconds: float = 1.0) -> list[Lease]:
        await self._ensure_group()
        try:
            return await self._reserve(consumer, count, block_seconds)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._group_ready = False  # the stream was deleted under us (FLUSHDB): recreate next call
            return []

    async def _reserve(self, consumer: str, count: int, block_seconds: float) -> list[Lease]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block_seconds
        while True:
            now = self._clock()
            _, next_due = await self._promote(
                keys=[self.delayed_key, self.stream], args=[repr(now), _PROMOTE_BATCH]
            )
            leases = await self._reclaim(consumer, count)
            remaining = deadline - loop.time()
            block_ms: int | None = None
            if not leases and remaining > 0:
                # Wake for the next due retry, and often enough to see a lease expire under a dead worker.
                wait = min(remaining, self._poll_seconds)
                if next_due is not None:
                    wait = min(wait, float(next_due) - now)
                block_ms = max(1, int(wait * 1000))  # BLOCK 0 would mean forever
            if len(leases) < count:
                reply: Any = await self._redis.xreadgroup(
                    GROUP, consumer, {self.stream: ">"}, count=count - len(leases), block=block_ms
                )
                for _, entries in reply or []:
                    for entry_id, fields in entries:
                        job = await self._decode(_s(entry_id), fields)
                        if job is not None:
                            leases.append(Lease(_s(entry_id), job, consumer, 1))
            if leases or loop.time() >= deadline:
                return leases

    async def _reclaim(self, consumer: str, count: int) -> list[Lease]:
        min_idle = max(1, int(self._options.visibility_timeout * 1000))
        reply = await self._redis.xautoclaim(
            self.stream, GROUP, consumer, min_idle, start_id=self._claim_cursor, count=count
        )
        # A cursor, not 0-0 every time: idle entries behind many live ones are still reached on later calls.
        self._claim_cursor = _s(reply[0])
        claimed = [(_s(i), f) for i, f in reply[1] if f]
        if not claimed:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for entry_id, _ in claimed:
            pipe.xpending_range(self.stream, GROUP, min=entry_id, max=entry_id, count=1)
        counts = await pipe.execute()
        leases = []
        for (entry_id, fields), pending in zip(claimed, counts, strict=True):
            deliveries = int(pending[0]["times_delivered"]) if pending else 2
            job = await self._decode(entry_id, fields)
            if job is not None:
                leases.append(Lease(entry_id, job, consumer, deliveries))
        return leases

    async def _decode(self, entry_id: str, fields: dict[bytes, bytes]) -> PushJob | None:
        """The entry's job; an entry no worker can read is dead-lettered here, or it would be reclaimed and
        fail again after every visibility timeout, forever."""
        raw = fields.get(b"job", b"")
        try:
            return PushJob.from_bytes(raw)
        except (ValueError, KeyError, TypeError) as exc:
            pipe = self._redis.pipeline(transaction=True)
            pipe.xack(self.stream, GROUP, entry_id)
            pipe.xdel(self.stream, entry_id)
            reason = f"undecodable job: {type(exc).__name__}: {exc}"[:500]
            fields_out: dict[Any, Any] = {"job": raw, "reason": reason, "at": repr(self._clock())}
            pipe.xadd(self.dead_key, fields_out, maxlen=self._options.dead_letter_max, approximate=True)
            await pipe.execute()
            return None

    def answered_key(self, entry_id: str) -> str:
        """Where the checkpoint of one stream entry is kept."""
        return self._answered_prefix + entry_id

    async def _finish(self, lease: Lease, then: Any = None) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.xack(self.stream, GROUP, lease.id)
        pipe.xdel(self.stream, lease.id)
        pipe.delete(self.answered_key(lease.id))
        if then is not None:
            then(pipe)
        await pipe.execute()

    async def ack(self, lease: Lease) -> None:
        await self._finish(lease)

    async def retry(self, lease: Lease, job: PushJob, delay: float) -> None:
        def schedule(pipe: Any) -> None:
            if delay > 0:
                pipe.zadd(self.delayed_key, {self._member(job): self._clock() + delay})
            else:
                pipe.xadd(self.stream, {"job": job.to_bytes()})

        await self._finish(lease, schedule)

    async def dead_letter(self, lease: Lease, job: PushJob, reason: str) -> None:
        fields = {"job": job.to_bytes(), "reason": reason, "at": repr(self._clock())}

        def keep(pipe: Any) -> None:
            pipe.xadd(self.dead_key, fields, maxlen=self._options.dead_letter_max, approximate=True)

        await self._finish(lease, keep)

    async def checkpoint(self, lease: Lease, answers: Mapping[str, str]) -> None:
        if not answers:
            return
        items = b"," + orjson.dumps([x for pair in answers.items() for x in pair])[1:-1]
        ttl_ms = max(1, int(self._options.checkpoint_ttl * 1000))
        keys = [self.stream, self.answered_key(lease.id)]
        await self._checkpoint(keys=keys, args=[GROUP, lease.id, ttl_ms, items])

    async def answered(self, lease: Lease) -> dict[str, str]:
        raw: Any = await self._redis.get(self.answered_key(lease.id))
        if not raw:
            return {}
        flat = orjson.loads(b"[" + raw[1:] + b"]")  # the stored items start with a comma
        return dict(zip(flat[0::2], flat[1::2], strict=True))

    async def touch(self, lease: Lease) -> bool:
        owned = await self._touch(keys=[self.stream], args=[GROUP, lease.consumer, lease.id])
        return bool(owned)

    async def beat(self, consumer: str) -> None:
        now = self._clock()
        with redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zadd(self.workers_key, {consumer: now})
                pipe.zremrangebyscore(self.workers_key, "-inf", now - 86_400)  # forget long-gone workers
                await pipe.execute()

    async def live_workers(self, within: float) -> int:
        with redis_errors():
            return int(await self._redis.zcount(self.workers_key, self._clock() - within, "+inf"))

    async def stats(self) -> QueueStats:
        await self._ensure_group()
        now = self._clock()
        pipe = self._redis.pipeline(transaction=False)
        pipe.xlen(self.stream)
        pipe.xpending(self.stream, GROUP)
        pipe.zcount(self.delayed_key, "-inf", repr(now))
        pipe.zcard(self.delayed_key)
        pipe.xlen(self.dead_key)
        length, pending, due, delayed, dead = await pipe.execute()
        in_flight = int(pending["pending"])
        return QueueStats(
            ready=max(0, int(length) - in_flight),
            in_flight=in_flight,
            delayed=int(delayed) - int(due),
            due=int(due),
            dead=int(dead),
        )

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        entries: Any = await self._redis.xrevrange(self.dead_key, count=limit)
        return [
            DeadLetter(_s(i), _readable(f[b"job"]), _s(f[b"reason"]), float(f[b"at"])) for i, f in entries
        ]

    async def requeue_dead(self, limit: int = 1000) -> int:
        entries: Any = await self._redis.xrange(self.dead_key, count=limit)
        moved = 0
        for entry_id, fields in entries:
            try:
                job = PushJob.from_bytes(fields[b"job"])
            except (ValueError, KeyError, TypeError):
                continue  # unreadable: stays dead, for a human to look at
            keys = [self.dead_key, self.stream]
            moved += int(await self._redrive(keys=keys, args=[entry_id, replace(job, attempt=1).to_bytes()]))
        return moved

    async def close(self) -> None:
        if self._owns_client:
            await self._redis.aclose()
