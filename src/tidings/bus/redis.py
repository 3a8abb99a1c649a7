"""The Redis bus: ids and ordering from one Lua script, fan-out by pub/sub, history in per-channel Streams.

Publishing runs one script that, atomically per event, takes the next id from a global log stream, appends the
message to the log (kept short, for subscribers that reconnect) and to each audience channel's history stream,
then PUBLISHes it. Because the script is atomic, pub/sub order equals id order across every publisher.

A subscriber that loses its connection re-subscribes with backoff, then reads what it missed from the global log
so that a blip between processes and Redis loses nothing (and duplicates are skipped by id).
Keys are computed inside the script, so this targets a single Redis (or a primary with replicas), not Cluster.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from typing import cast

import redis.asyncio as redis
from redis.exceptions import RedisError

from ..clock import Clock, system_clock
from ..errors import redis_errors
from ..wire import message_id, parse_id
from .base import Bus, Deliver

log = logging.getLogger("tidings.bus")


class RedisBus(Bus):
    """Pub/sub across processes sharing one Redis; one subscription (one connection) per process."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "tidings",
        max_events: int = 1000,
        max_age: float = 600,
        log_length: int = 10_000,
        clock: Clock = system_clock,
    ) -> None:
        self._redis = redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=3, health_check_interval=15
        )
        self._channel = f"{prefix}:bus"
        self._log_key = f"{prefix}:log"
        self._history_prefix = f"{prefix}:h:"
        self._revoked_prefix = f"{prefix}:revoked:"
        self._user_revoked_prefix = f"{prefix}:revoked-user:"
        self._max_events = max_events
        self._max_age = max_age
        self._log_length = log_length
        self._clock = clock
        self._publish = self._redis.register_script(_PUBLISH_SCRIPT)
        self._deliver: Deliver | None = None
        self._reader: asyncio.Task[None] | None = None
        self._last: tuple[int, int] = (0, 0)
        self.connected = asyncio.Event()

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._reader = asyncio.create_task(self._read_forever(), name="tidings-redis-bus")
        try:
            async with asyncio.timeout(5):
                await self.connected.wait()
        except TimeoutError:
            log.warning("redis bus: not connected yet; continuing to retry in the background")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        await self._redis.aclose()

    async def publish(self, tails: Sequence[bytes]) -> list[str]:
        args: list[bytes | str | int] = [
            self._history_prefix,
            self._max_events,
            self._log_length,
            int(self._max_age * 1000),
            *tails,
        ]
        with redis_errors():
            ids = await self._publish(keys=[self._log_key, self._channel], args=args)
        return [i.decode() for i in ids]

    async def history(self, after: str, channels: Sequence[str]) -> list[bytes] | None:
        try:
            start = parse_id(after)
        except ValueError:
            return None
        if start[0] < (self._clock() - self._max_age) * 1000:
            return None
        with redis_errors():
            return await self._history_since(start, after, channels)

    async def _history_since(
        self, start: tuple[int, int], after: str, channels: Sequence[str]
    ) -> list[bytes] | None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xrevrange(self._log_key, count=1)
            pipe.xrange(self._log_key, count=1)
            for channel in channels:
                key = self._history_prefix + channel
                pipe.xrange(key, count=1)  # the oldest kept entry and its predecessor's id
                pipe.xrange(key, min=f"({after}")
            results = await pipe.execute()
        newest, oldest_logged, per_channel = results[0], results[1], results[2:]
        if not newest or start > parse_id(newest[0][0].decode()):
            return None  # an id from the future: not one we issued
        if start < parse_id(oldest_logged[0][0].decode()):
            return None  # older than the global log: Redis restarted empty, or it was trimmed past the id
        merged: dict[bytes, bytes] = {}
        for oldest, entries in zip(per_channel[0::2], per_channel[1::2], strict=True):
            if oldest and parse_id(oldest[0][1][b"p"].decode()) > start:
                return None  # events after `after` on this channel were trimmed away
            for entry_id, fields in entries:
                merged[entry_id] = entry_id + b"\n" + fields[b"t"]
        return [merged[key] for key in sorted(merged, key=lambda k: parse_id(k.decode()))]

    async def mark_revoked(self, jti: str, until: float) -> None:
        with redis_errors():
            await self._redis.set(f"{self._revoked_prefix}{jti}", b"1", pxat=int(until * 1000))

    async def is_revoked(self, jti: str) -> bool:
        with redis_errors():
            return bool(await self._redis.exists(f"{self._revoked_prefix}{jti}"))

    async def mark_user_revoked(self, user_id: str, at: float, until: float) -> None:
        with redis_errors():
            key = f"{self._user_revoked_prefix}{user_id}"
            await self._redis.set(key, repr(at).encode(), pxat=int(until * 1000))

    async def is_token_revoked(self, user_id: str, jti: str | None, issued_at: float | None) -> bool:
        keys = [f"{self._user_revoked_prefix}{user_id}"]
        if jti is not None:
            keys.append(f"{self._revoked_prefix}{jti}")
        with redis_errors():
            revoked_at, *by_jti = await self._redis.mget(keys)
        if by_jti and by_jti[0] is not None:
            return True
        return revoked_at is not None and (issued_at is None or issued_at <= float(revoked_at))

    async def healthy(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def _read_forever(self) -> None:
        delay = 0.1
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                await self._catch_up()
                if not self.connected.is_set():
                    log.info("redis bus: subscribed to %s", self._channel)
                self.connected.set()
                delay = 0.1
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        self._hand_over(message["data"])
            except (RedisError, OSError) as exc:
                self.connected.clear()
                log.warning("redis bus: connection lost (%s); retrying in %.1fs", exc, delay)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 5.0)

    async def _catch_up(self) -> None:
        """Deliver what the global log holds beyond the last message this process saw (after a reconnect)."""
        if self._last == (0, 0):
            return
        after = f"({self._last[0]}-{self._last[1]}"
        entries = cast(
            list[tuple[bytes, dict[bytes, bytes]]], await self._redis.xrange(self._log_key, min=after)
        )
        for entry_id, fields in entries:
            self._hand_over(entry_id + b"\n" + fields[b"t"])

    def _hand_over(self, message: bytes) -> None:
        key = parse_id(message_id(message))
        if key <= self._last:
            return  # already delivered (overlap between catch-up and live)
        self._last = key
        if self._deliver is not None:
            try:
                self._deliver(message)
            except Exception:  # a routing bug must not kill the subscription
                log.exception("redis bus: delivering %s failed", key)


_PUBLISH_SCRIPT = """
local log_key, bus = KEYS[1], KEYS[2]
local prefix, max_events, log_len, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ids = {}
for i = 5, #ARGV do
  local tail = ARGV[i]
  -- the log's id generator is monotonic even if the clock steps back; entries store the tail, the id is theirs
  local id = redis.call('XADD', log_key, 'MAXLEN', '~', log_len, '*', 't', tail)
  local first = string.find(tail, '\\n', 1, true)
  local second = string.find(tail, '\\n', first + 1, true)
  for channel in string.gmatch(string.sub(tail, first + 1, second - 1), '%S+') do
    local key = prefix .. channel
    local newest = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
    local previous = newest[1] and newest[1][1] or '0-0'
    -- p = the channel's previous id: a replay can tell "trimmed" from "nothing happened"
    redis.call('XADD', key, 'MAXLEN', max_events, id, 'p', previous, 't', tail)
    redis.call('PEXPIRE', key, ttl)
  end
  redis.call('PUBLISH', bus, id .. '\\n' .. tail)
  ids[#ids + 1] = id
end
return ids
"""
