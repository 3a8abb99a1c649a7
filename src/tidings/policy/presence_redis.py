"""Cluster-wide presence on Redis: each process publishes its own per-user stream counts and a heartbeat.

    {prefix}:presence:procs      zset  process id -> time of its last heartbeat (ms, the injected clock)
    {prefix}:presence:p:{proc}   hash  user -> live streams on that process (absolute counts, idempotent)
    {prefix}:presence:seen       zset  user -> when last seen online (ms), trimmed to `last_seen_retention`

A process counts while its heartbeat is younger than `ttl`: readers filter by the score, so a SIGKILLed
process stops counting `ttl` after its last beat (10 s by default, beats every 3 s) without anyone cleaning
up first. Living processes then reap the dead one a batch at a time, folding its users into `seen` at its
last beat; a process that finds itself reaped (it stalled longer than `ttl`) rewrites its whole hash.

Costs: `connected`/`disconnected` touch only a dict and an Event. Changes are written by one background task,
batched for `sync_delay`, as absolute counts: O(users changed) per write. A heartbeat is one script whose cost
does not depend on the number of users (ZSCORE + ZADD + PEXPIRE + one range on `procs` + a trim of `seen`),
plus up to `reap_batch` users while a dead process is being reaped. `online_many` is one script: an HMGET of
the audience on each live process's hash, O(processes x audience). Measured by bench/policy_presence.py on a
loaded 2-core host: a heartbeat takes Redis 40-70 µs with 1 or 10,000 users; online_many(1,000) about 1 ms of
Redis per live process; a process's hash of 10,000 users 600 KiB; reaping costs about 10 µs of Redis per user.

Deviation: the scripts build the per-process key names themselves, so the keys do not all hash to one slot
(Redis Cluster would need hash tags); the rest of tidings assumes a single Redis as well. Times come from the
injected clock, so processes must share a clock (NTP); a skew shifts expiry by that much.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress

from redis.asyncio import Redis

from ..errors import BusUnavailable, redis_errors
from .presence import LocalCounts, Presence, PresenceOptions, PresenceStatus

log = logging.getLogger("tidings.policy")

_CHUNK = 1000  # users per HSET / ZADD when a whole state is written
_STOP_SECONDS = 5.0  # how long stop() waits for Redis to take this process's withdrawal
_MAX_DIRTY = 200_000  # pending changes kept through a Redis outage; beyond this a full rewrite replaces them

# KEYS: procs, own hash, seen. ARGV: self, now, ttl, hash ttl, retention, proc key prefix, reap batch.
_HEARTBEAT = """
local now = tonumber(ARGV[2])
local horizon = now - tonumber(ARGV[3])
local prev = redis.call('ZSCORE', KEYS[1], ARGV[1])
local stale = 0
if (not prev) or tonumber(prev) <= horizon then stale = 1 end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
local reaped = 0
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', horizon, 'WITHSCORES', 'LIMIT', 0, 1)
if #dead > 0 then
  local h = ARGV[6] .. dead[1]
  local users = redis.call('HRANDFIELD', h, tonumber(ARGV[7]))
  if #users > 0 then
    local args = {}
    for i, u in ipairs(users) do args[2 * i - 1] = dead[2]; args[2 * i] = u end
    redis.call('ZADD', KEYS[3], 'GT', unpack(args))
    redis.call('HDEL', h, unpack(users))
    reaped = #users
  end
  if redis.call('EXISTS', h) == 0 then redis.call('ZREM', KEYS[1], dead[1]) end
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[5]))
redis.call('PEXPIRE', KEYS[3], ARGV[5])
return {stale, reaped}
"""

# KEYS: procs, seen. ARGV: self, now, ttl, proc key prefix, want last-seen (0/1), users (a JSON array: one
# argument, because packing a thousand arguments cost the client more than the whole query costs Redis).
# Counts come from live processes other than the caller (the caller adds its own, unsynced, local counts).
# Returns {counts, last seen | nil} for one user (want last-seen = 1), else a string of 0/1 flags.
_QUERY = """
local horizon = tonumber(ARGV[2]) - tonumber(ARGV[3])
local want_seen = ARGV[5] == '1'
local users = cjson.decode(ARGV[6])
local n = #users
local counts = {}
for i = 1, n do counts[i] = 0 end
local seen = false
local procs = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #procs, 2 do
  local p, at = procs[i], tonumber(procs[i + 1])
  local h = ARGV[4] .. p
  if p == ARGV[1] then
  elseif at > horizon then
    for a = 1, n, 500 do
      local b = math.min(a + 499, n)
      local vals = redis.call('HMGET', h, unpack(users, a, b))
      for j = 1, #vals do
        if vals[j] then counts[a + j - 1] = counts[a + j - 1] + tonumber(vals[j]) end
      end
    end
  elseif want_seen and redis.call('HEXISTS', h, users[1]) == 1 then
    if (not seen) or at > seen then seen = at end
  end
end
if not want_seen then
  -- one bulk string of 0/1 flags: a 1,000-element reply costs the client far more to parse than the query
  for i = 1, n do counts[i] = counts[i] > 0 and '1' or '0' end
  return table.concat(counts)
end
local s = redis.call('ZSCORE', KEYS[2], users[1])
if s and ((not seen) or tonumber(s) > seen) then seen = tonumber(s) end
if seen then seen = tostring(seen) end
return {counts, seen}
"""


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class RedisPresence(Presence):
    """Presence shared by every process on one Redis; see the module docstring for keys and costs."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "tidings",
        options: PresenceOptions | None = None,
        client: Redis | None = None,
        process_id: str | None = None,
    ) -> None:
        self._options = options or PresenceOptions()
        self._clock = self._options.clock
        self._owns_client = client is None
        self._redis: Redis = client if client is not None else Redis.from_url(url, decode_responses=False)
        self.process_id = process_id or f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        self.procs_key = f"{prefix}:presence:procs"
        self.proc_prefix = f"{prefix}:presence:p:"
        self.own_key = self.proc_prefix + self.process_id
        self.seen_key = f"{prefix}:presence:seen"
        self._heartbeat = self._redis.register_script(_HEARTBEAT)
        self._query = self._redis.register_script(_QUERY)
        self._local = LocalCounts()
        self._dirty: dict[str, float] = {}  # user -> when their last local stream closed (0: still open)
        self._writing: dict[str, float] = {}  # the changes of the write in flight, until Redis confirms them
        self._resync = True  # the next write replaces our whole hash (first write, or after being reaped)
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._joined = False  # a heartbeat was sent: this process counts in the cluster and must leave it
        self._ttl_ms = _ms(self._options.ttl)
        # A dead process's hash must outlive its reaping (10,000 users at 500 a beat: 20 beats of one survivor,
        # 60 s); the ttl frees it when no process survives to reap it.
        self._hash_ttl_ms = _ms(max(self._options.ttl * 30, 300.0))

    def __repr__(self) -> str:
        return f"<RedisPresence {self.process_id!r} local_users={len(self._local.counts)}>"

    # --- the router's side: synchronous, O(1) ------------------------------------------------------------

    def connected(self, user_id: str) -> None:
        self._local.up(user_id)
        self._dirty.setdefault(user_id, 0.0)
        self._wake.set()

    def disconnected(self, user_id: str) -> None:
        if self._local.down(user_id) == 0:
            self._dirty[user_id] = self._clock()
            self._wake.set()

    def local_connections(self, user_id: str) -> int:
        return self._local.counts.get(user_id, 0)

    # --- queries -----------------------------------------------------------------------------------------

    async def status(self, user_id: str) -> PresenceStatus:
        now = self._clock()
        # Taken before the query is sent: a close still on its way to Redis is known here, one already
        # confirmed is in Redis by the time the query runs, so last-seen never falls into the gap between.
        pending = max(self._dirty.get(user_id, 0.0), self._writing.get(user_id, 0.0))
        with redis_errors("presence unavailable"):
            counts, seen = await self._query(
                keys=[self.procs_key, self.seen_key],
                args=[self.process_id, _ms(now), self._ttl_ms, self.proc_prefix, 1, json.dumps([user_id])],
            )
        total = int(counts[0]) + self._local.counts.get(user_id, 0)
        if total:
            return PresenceStatus(True, total, now)
        last = max(int(seen) / 1000 if seen is not None else 0.0, pending)
        if last <= now - self._options.last_seen_retention:
            return PresenceStatus(False, 0, None)
        return PresenceStatus(False, 0, last)

    async def online_many(self, user_ids: Iterable[str]) -> dict[str, bool]:
        users = list(dict.fromkeys(user_ids))
        if not users:
            return {}
        with redis_errors("presence unavailable"):
            flags = await self._query(
                keys=[self.procs_key, self.seen_key],
                args=[
                    self.process_id,
                    _ms(self._clock()),
                    self._ttl_ms,
                    self.proc_prefix,
                    0,
                    json.dumps(users),
                ],
            )
        if isinstance(flags, str):  # a shared client made with decode_responses=True
            flags = flags.encode()
        local = self._local.counts
        return {user: flag == 49 or user in local for user, flag in zip(users, flags, strict=True)}  # b"1"

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        with redis_errors("presence unavailable"):
            # Loaded up front so a query is one EVALSHA, never EVALSHA + NOSCRIPT + SCRIPT LOAD + EVALSHA.
            for script in (_HEARTBEAT, _QUERY):
                await self._redis.script_load(script)
        await self.flush()
        self._task = asyncio.create_task(self._run(), name=f"presence-{self.process_id}")

    async def stop(self) -> None:
        if not self._joined:  # only ever asked (a worker process): nothing of ours to withdraw
            if self._owns_client:
                await self._redis.aclose()
            return
        self._joined = False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=_STOP_SECONDS)
            if not done:
                log.error("presence: the background task did not stop within %.0fs", _STOP_SECONDS)
        try:
            # Bounded: shutdown must not hang on a Redis that stopped answering; the ttl withdraws us anyway.
            async with asyncio.timeout(_STOP_SECONDS):
                await self._leave()
        except (BusUnavailable, TimeoutError) as exc:
            log.warning("presence: leaving the cluster failed (%r); expires in %.0fs", exc, self._options.ttl)
        if self._owns_client:
            await self._redis.aclose()

    async def flush(self) -> None:
        await self._beat()
        await self._sync()

    # --- background work ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + self._options.heartbeat
        while True:
            with suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_beat - loop.time())):
                    await self._wake.wait()
            if self._wake.is_set():
                await asyncio.sleep(self._options.sync_delay)  # let a burst of connects become one write
            if loop.time() >= next_beat:
                next_beat = loop.time() + self._options.heartbeat
                await self._guarded(self._beat)
            await self._guarded(self._sync)

    async def _guarded(self, step: Callable[[], Awaitable[None]]) -> None:
        try:
            await step()
        except BusUnavailable as exc:
            log.warning("presence: %s; retrying", exc)
        except Exception:  # the loop must outlive any one failure, or presence silently freezes
            log.exception("presence: background step failed")

    async def _beat(self) -> None:
        opts = self._options
        self._joined = True  # before the call: a beat that reached Redis but timed out counts too
        with redis_errors("presence heartbeat failed"):
            stale, _reaped = await self._heartbeat(
                keys=[self.procs_key, self.own_key, self.seen_key],
                args=[
                    self.process_id,
                    _ms(self._clock()),
                    self._ttl_ms,
                    self._hash_ttl_ms,
                    _ms(opts.last_seen_retention),
                    self.proc_prefix,
                    opts.reap_batch,
                ],
            )
        if stale:
            self._resync = True  # new, or counted dead and (perhaps partly) reaped: rewrite everything

    async def _sync(self) -> None:
        async with self._lock:
            self._wake.clear()
            if not self._dirty and not self._resync:
                return
            dirty, self._dirty = self._dirty, {}
            self._writing = dirty
            try:
                await (self._write_all(dirty) if self._resync else self._write(dirty))
            except BusUnavailable:
                dirty.update(self._dirty)  # changes made meanwhile are newer
                self._dirty = dirty
                if len(dirty) > _MAX_DIRTY:
                    self._dirty = {}
                    self._resync = True  # counts are rewritten whole; those last-seen times are lost
                raise
            finally:
                self._writing = {}
            self._resync = False

    def _seen_of(self, dirty: dict[str, float]) -> dict[str, int]:
        counts = self._local.counts
        return {user: _ms(at) for user, at in dirty.items() if at and user not in counts}

    async def _write(self, dirty: dict[str, float]) -> None:
        counts = self._local.counts
        up = {user: counts[user] for user in dirty if user in counts}
        gone = [user for user in dirty if user not in counts]
        seen = self._seen_of(dirty)
        pipe = self._redis.pipeline(transaction=False)
        if up:
            pipe.hset(self.own_key, mapping=up)  # type: ignore[arg-type]
        if gone:
            pipe.hdel(self.own_key, *gone)
        if seen:
            pipe.zadd(self.seen_key, seen, gt=True)
        pipe.pexpire(self.own_key, self._hash_ttl_ms)
        with redis_errors("presence sync failed"):
            await pipe.execute()

    async def _write_all(self, dirty: dict[str, float]) -> None:
        items = list(self._local.counts.items())
        seen = self._seen_of(dirty)
        pipe = self._redis.pipeline(transaction=True)  # readers never see the hash half rewritten
        pipe.delete(self.own_key)
        for start in range(0, len(items), _CHUNK):
            pipe.hset(self.own_key, mapping=dict(items[start : start + _CHUNK]))
        pipe.pexpire(self.own_key, self._hash_ttl_ms)
        if seen:
            pipe.zadd(self.seen_key, seen, gt=True)
        with redis_errors("presence sync failed"):
            await pipe.execute()

    async def _leave(self) -> None:
        now = _ms(self._clock())
        seen: dict[str, int] = self._seen_of(self._dirty)
        seen.update((user, now) for user in self._local.counts)
        pipe = self._redis.pipeline(transaction=True)
        users = list(seen.items())
        for start in range(0, len(users), _CHUNK):
            pipe.zadd(self.seen_key, dict(users[start : start + _CHUNK]), gt=True)
        pipe.delete(self.own_key)
        pipe.zrem(self.procs_key, self.process_id)
        with redis_errors("presence unavailable"):
            await pipe.execute()
        self._dirty = {}
