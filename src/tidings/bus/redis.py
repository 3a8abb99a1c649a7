"""The Redis bus: ids and ordering from Lua scripts, fan-out by pub/sub, history as references to one stored copy.

Publishing runs a script that, atomically per event, takes the next id from the events stream (storing the
message there, once), references it from each audience channel's history and PUBLISHes it: pub/sub order equals
id order across every publisher. What one event costs Redis is its size plus a small record per audience channel
(`redis_lua.py` has the figures); a batch is split into script calls of bounded cost (`CALL_CHANNELS` units: one
per channel written, `EVENT_COST` per event) and `CALL_BYTES` of messages, and an audience larger than one call
is indexed by follow-up calls (the event is
`pending` meanwhile, and resumes find it there), so no call holds Redis for long. A batch split across calls is
not atomic as a whole: if Redis fails between two calls, the events before the failure are published.

The subscription (`redis_subscriber.py`) catches up exactly after a lost connection, or tells the hub which it
cannot. Resumes read per-channel references for the connection's channels only: O(its channels + the replay).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from ..clock import Clock, system_clock
from ..errors import redis_errors
from ..wire import CONTROL, parse_id, tail_channels, with_id
from . import redis_lua
from .base import Bus, Deliver
from .redis_subscriber import EventKey, Subscription, key_of

log = logging.getLogger("tidings.bus")

# What one script call may do, so that none holds Redis for long (the budget is 50 ms; measured on a 2-core host
# under a load of 7: ~15 µs per channel written, ~70 µs per event stored and published, so a full call ~10 ms).
CALL_CHANNELS = 500  # cost units per call: one per channel written ...
EVENT_COST = 5  # ... and this many per event (its id, stored copy, PUBLISH)
CALL_BYTES = 1 << 20  # message bytes per script call (each is stored and published once)
SETTLE_TIMEOUT = 3.0  # how long a resume waits for this process's subscription to reach what it replays


class RedisBus(Bus):
    """Pub/sub across processes sharing one Redis; one subscription (one connection) per process."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "tidings",
        max_events: int = 1000,
        max_age: float = 600,
        log_length: int = 100_000,
        clock: Clock = system_clock,
    ) -> None:
        self._redis = redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=3, health_check_interval=15
        )
        self._channel = f"{prefix}:bus"
        self._events_key = f"{prefix}:events"
        self._meta_key = f"{prefix}:meta"
        self._pending_key = f"{prefix}:pending"
        self._index_prefix = f"{prefix}:ix:"
        self._dropped_prefix = f"{prefix}:ixd:"
        self._revoked_prefix = f"{prefix}:revoked:"
        self._user_revoked_prefix = f"{prefix}:revoked-user:"
        self._max_events = max_events
        self._max_age = max_age
        self._log_length = log_length
        self._clock = clock
        self._publish = self._redis.register_script(redis_lua.PUBLISH)
        self._index = self._redis.register_script(redis_lua.INDEX)
        self._read = self._redis.register_script(redis_lua.HISTORY)
        self._subscription: Subscription | None = None
        self._reader: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    async def start(self, deliver: Deliver) -> None:
        self._subscription = Subscription(
            self._redis,
            self._channel,
            events_key=self._events_key,
            meta_key=self._meta_key,
            snapshot=self._redis.register_script(redis_lua.SNAPSHOT),
            page=self._redis.register_script(redis_lua.PAGE),
            deliver=deliver,
        )
        self.connected = self._subscription.connected
        self._reader = asyncio.create_task(self._subscription.run(), name="tidings-redis-bus")
        try:
            async with asyncio.timeout(5):
                await self.connected.wait()
        except TimeoutError:
            self._subscription.late = True  # streams opened before it connects get a reset when it does
            log.warning("redis bus: not connected yet; continuing to retry in the background")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        await self._redis.aclose()

    # --- publishing ------------------------------------------------------------------------------------------

    async def publish(self, tails: Sequence[bytes]) -> list[str]:
        ids: list[str] = []
        settings: list[bytes | str | int] = [
            self._index_prefix,
            self._dropped_prefix,
            self._max_events,
            int(self._max_age * 1000),
        ]
        for call in _plan(tails, self._indexed_channels):
            args: list[bytes | str | int] = [*settings, self._log_length]
            for tail, head, rest in call:
                args += [tail, 1 if rest else 0, len(head), *head]
            with redis_errors():
                assigned = [i.decode() for i in await self._publish(keys=self._publish_keys, args=args)]
            ids += assigned
            for (_, _, rest), event_id in zip(call, assigned, strict=True):
                if rest:
                    await self._index_rest(event_id, rest, settings)
        return ids

    @property
    def _publish_keys(self) -> list[str]:
        return [self._events_key, self._channel, self._meta_key, self._pending_key]

    @property
    def _keeps_history(self) -> bool:
        return self._max_events > 0 and int(self._max_age * 1000) > 0

    def _indexed_channels(self, tail: bytes) -> list[str]:
        if not self._keeps_history:
            return []  # no history kept: resumes reset
        return [c for c in tail_channels(tail) if c != CONTROL]  # no stream reads the control channel

    async def _index_rest(self, event_id: str, rest: list[str], settings: list[bytes | str | int]) -> None:
        """Reference the event from the rest of its audience, a bounded number of channels per call. The event
        is already out; if Redis fails here it stays `pending`, where resumes still find it."""
        chunks = [rest[i : i + CALL_CHANNELS] for i in range(0, len(rest), CALL_CHANNELS)]
        try:
            for n, chunk in enumerate(chunks, 1):
                done = 1 if n == len(chunks) else 0
                await self._index(keys=[self._pending_key], args=[*settings, event_id, done, *chunk])
        except (RedisError, OSError) as exc:
            log.warning("redis bus: indexing %s unfinished (%s); resumes read it from pending", event_id, exc)

    # --- history -------------------------------------------------------------------------------------------

    async def history(self, after: str, channels: Sequence[str]) -> list[bytes] | None:
        try:
            start = parse_id(after)
        except ValueError:
            return None
        if not self._keeps_history or start[0] < (self._clock() - self._max_age) * 1000:
            return None
        subscription = self._subscription
        gaps = subscription.gaps if subscription is not None else 0
        with redis_errors():
            found = await self._read_history(start, channels)
        if found is None or subscription is None:
            return None if found is None else [message for _, message in found]
        return await subscription.settle(start, found, gaps, SETTLE_TIMEOUT)

    async def _read_history(
        self, start: EventKey, channels: Sequence[str]
    ) -> list[tuple[EventKey, bytes]] | None:
        """Events after `start` on `channels`, oldest first; None when some may be missing."""
        reply = await self._read(
            keys=[self._meta_key, self._pending_key],
            args=[start[0], self._index_prefix, self._dropped_prefix, *channels],
        )
        now_ms, origin, newest, pending, *per_channel = reply
        if origin is None or newest is None or start < key_of(origin) or start > key_of(newest):
            return None  # before what this Redis knows (restarted empty, or never), or an id never issued
        if start[0] < now_ms - self._max_age * 1000:
            return None  # by Redis' own clock, which is the one its expiries follow
        wanted: set[bytes] = set()
        for dropped, ids in zip(per_channel[0::2], per_channel[1::2], strict=True):
            if dropped is not None and key_of(dropped) > start:
                return None  # events after `start` on this channel were trimmed away
            wanted.update(i for i in ids if key_of(i) > start)
        candidates = [i for i in pending if key_of(i) > start and i not in wanted]
        messages = await self._fetch([*wanted, *candidates])
        if messages is None:
            return None  # a referenced message is gone (trimmed by count): a gap, not "nothing happened"
        asked = set(channels)
        found = [(key_of(i), messages[i]) for i in wanted]
        found += [
            (key_of(i), messages[i])
            for i in candidates
            if asked.intersection(tail_channels(messages[i].split(b"\n", 1)[1]))
        ]
        found.sort()
        return found

    async def _fetch(self, ids: list[bytes]) -> dict[bytes, bytes] | None:
        """The stored messages of `ids` (each `<id>\\n<tail>`); None if any is no longer stored."""
        if not ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for event_id in ids:
                pipe.xrange(self._events_key, min=event_id, max=event_id)
            results = await pipe.execute()
        messages = {}
        for event_id, entries in zip(ids, results, strict=True):
            if not entries:
                return None
            messages[event_id] = with_id(event_id, entries[0][1][b"t"])
        return messages

    # --- sessions and health -------------------------------------------------------------------------------

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


Call = list[tuple[bytes, list[str], list[str]]]  # per event: tail, channels indexed in the call, the rest


def _plan(tails: Sequence[bytes], channels_of: Any) -> Iterator[Call]:
    """Group events into script calls costing at most CALL_CHANNELS units (EVENT_COST per event, one per channel)
    and CALL_BYTES of messages, at least one event each; an event with a larger audience ends its call and the
    rest of its audience is indexed after, CALL_CHANNELS channels per call."""
    call: Call = []
    cost = size = 0
    for tail in tails:
        channels: list[str] = channels_of(tail)
        fits = max(1, CALL_CHANNELS - EVENT_COST)
        head, rest = channels[:fits], channels[fits:]
        if call and (cost + EVENT_COST + len(head) > CALL_CHANNELS or size + len(tail) > CALL_BYTES):
            yield call
            call, cost, size = [], 0, 0
        call.append((tail, head, rest))
        cost += EVENT_COST + len(head)
        size += len(tail)
        if rest:
            yield call
            call, cost, size = [], 0, 0
    if call:
        yield call
