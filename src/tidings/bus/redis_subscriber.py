"""The Redis bus's subscription: deliver every event in id order exactly once, or say plainly that some are lost.

Pub/sub itself promises nothing across a lost connection (Redis cuts a subscriber that falls behind its output
buffer limit; a stopped or paused process falls behind). So the subscription keeps a watermark — the id through
which it has delivered everything — and on every (re)subscribe, once Redis confirmed the subscription:

1. reads a snapshot: Redis' run id, the history's origin, the newest id issued and the floor of the events stream
   (the newest id trimmed away);
2. if Redis restarted or lost its data (run id or origin changed), went back in time (newest < watermark) or
   trimmed past the watermark (floor > watermark), events may be gone: it delivers one `tidings.gap` control
   message naming the watermark (each stream of this process then recovers from its own channels' history, or
   gets a reset: streams/recover.py) and carries on live from the newest id;
3. otherwise it reads every event after the watermark from the events stream, page by page (each page read
   atomically with the floor, so a trim racing the catch-up is caught), and delivers them; live messages that
   overlap are skipped by id.

The check never depends on how long the stream is: the floor is recorded by the publish script as it trims.

Resumes must not run ahead of this watermark (a replayed event that the subscription delivers again later would
be a duplicate, out of order): `settle` lets a resume wait, briefly, for the subscription to reach the newest
event it read, and cuts what it replays at the watermark.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from ..wire import gap_message, message_id, parse_id
from .base import Deliver

log = logging.getLogger("tidings.bus")

EventKey = tuple[int, int]
ZERO: EventKey = (0, 0)
PAGE_SIZE = 500  # catch-up entries per read: bounded memory per step, and Redis is never held long
CONFIRM_TIMEOUT = 5.0  # seconds to wait for Redis to confirm a SUBSCRIBE


def key_of(raw: bytes | str | None) -> EventKey:
    if raw is None:
        return ZERO
    return parse_id(raw.decode() if isinstance(raw, bytes) else raw)


class Subscription:
    """One pub/sub subscription per process, with exact catch-up after a lost connection (see the module doc)."""

    def __init__(
        self,
        client: Any,
        channel: str,
        *,
        events_key: str,
        meta_key: str,
        snapshot: Callable[..., Any],
        page: Callable[..., Any],
        deliver: Deliver,
    ) -> None:
        self._client = client
        self._channel = channel
        self._events_key, self._meta_key = events_key, meta_key
        self._snapshot, self._page = snapshot, page
        self._deliver = deliver
        self.last: EventKey = ZERO  # every event up to here was delivered (or announced lost by a gap)
        self.gaps = 0  # how many gaps were announced: a resume read across one must not be trusted
        self._incarnation: tuple[bytes, bytes] | None = None  # (run id, origin) of the Redis we follow
        self.late = False  # set when the process went on without a subscription (streams may open meanwhile)
        self._waiters: list[tuple[EventKey, asyncio.Future[None]]] = []
        self.connected = asyncio.Event()

    async def run(self) -> None:
        delay = 0.1
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                await self._confirmed(pubsub)
                await self._recover()
                if not self.connected.is_set():
                    log.info("redis bus: subscribed to %s", self._channel)
                self.connected.set()
                delay = 0.1
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        self._hand_over(message["data"])
            except (RedisError, OSError) as exc:
                self.connected.clear()
                log.warning("redis bus: subscription lost (%s); retrying in %.1fs", exc, delay)
            except Exception:  # a bug or an unreadable reply must not end the subscription for good
                self.connected.clear()
                log.exception("redis bus: subscription failed; retrying in %.1fs", delay)
            finally:
                await pubsub.aclose()
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 5.0)

    async def _confirmed(self, pubsub: Any) -> None:
        """Wait for Redis to confirm the subscription: only then is every later PUBLISH sure to reach us."""
        async with asyncio.timeout(CONFIRM_TIMEOUT):
            while True:
                message = await pubsub.get_message(timeout=CONFIRM_TIMEOUT)
                if message is not None and message["type"] == "subscribe":
                    return

    async def _recover(self) -> None:
        info = await self._client.info("server")
        origin, newest, floor = await self._snapshot(keys=[self._meta_key])
        incarnation = (str(info.get("run_id", "")).encode(), origin)
        newest_key = key_of(newest)
        if self._incarnation is None:  # the first subscription: nothing is owed from before it...
            self._incarnation = incarnation
            if self.late:  # ...unless streams could open before it, and may have missed events since
                self._gap("subscribed only after streams could open", incarnation, newest_key)
            else:
                self._advance(newest_key)
            return
        if incarnation != self._incarnation:
            self._gap("redis restarted or lost its data", incarnation, newest_key)
        elif newest_key < self.last:
            self._gap("redis went back in time (a restore or failover lost writes)", incarnation, newest_key)
        elif key_of(floor) > self.last:
            self._gap(
                "the events stream was trimmed past what this process had seen", incarnation, newest_key
            )
        else:
            await self._catch_up(newest_key, incarnation)

    async def _catch_up(self, newest: EventKey, incarnation: tuple[bytes, bytes]) -> None:
        """Deliver every event after the watermark, up to `newest` (live messages take over from there)."""
        caught = 0
        while self.last < newest:
            cursor = self.last
            floor, page = await self._page(
                keys=[self._events_key, self._meta_key], args=[f"{cursor[0]}-{cursor[1]}", PAGE_SIZE]
            )
            if key_of(floor) > cursor:
                self._gap("the events stream was trimmed during catch-up", incarnation, newest)
                return
            messages = split_page(page)
            if not messages:  # `newest` was issued but is not there: something removed it
                self._gap("events the history announced are missing", incarnation, newest)
                return
            for message in messages:
                self._hand_over(message)
            caught += len(messages)
        if caught:
            log.info("redis bus: caught up %d events missed while the subscription was down", caught)

    def _gap(self, why: str, incarnation: tuple[bytes, bytes], newest: EventKey) -> None:
        """Events after the watermark may be lost: tell the hub (each stream recovers from its channels' history
        or resets), then carry on live."""
        log.warning("redis bus: %s; streams recover from their channels' history or reset", why)
        since = f"{self.last[0]}-{self.last[1]}" if self.last != ZERO else None
        self._incarnation = incarnation
        self.gaps += 1
        self.last = newest  # even if lower: after a restart, ids from before it mean nothing
        self._call_deliver(gap_message(f"{newest[0]}-{newest[1]}", why, since))
        self._wake()

    def _hand_over(self, message: bytes) -> None:
        key = parse_id(message_id(message))
        if key <= self.last:
            return  # already delivered (catch-up and live overlap)
        self.last = key
        self._call_deliver(message)
        if self._waiters:
            self._wake()

    def _advance(self, key: EventKey) -> None:
        self.last = max(self.last, key)
        self._wake()

    def _call_deliver(self, message: bytes) -> None:
        try:
            self._deliver(message)
        except Exception:  # a routing bug must not kill the subscription
            log.exception("redis bus: delivering %s failed", message_id(message))

    # --- the seam with resumes ---------------------------------------------------------------------------

    async def settle(
        self, start: EventKey, found: list[tuple[EventKey, bytes]], gaps: int, within: float
    ) -> list[bytes] | None:
        """What a resume may replay of `found` (read from history after `start`): only events this subscription
        has delivered, so the replay meets the live stream without a duplicate. Waits up to `within` seconds for the
        subscription to reach them; None if it cannot even reach `start` or a gap was announced meanwhile."""
        newest = found[-1][0] if found else start
        if self.last < newest and self.connected.is_set():
            future = asyncio.get_running_loop().create_future()
            entry = (newest, future)
            self._waiters.append(entry)
            try:
                async with asyncio.timeout(within):
                    await future
            except TimeoutError:
                pass
            finally:
                if entry in self._waiters:
                    self._waiters.remove(entry)
        if self.last < start or self.gaps != gaps:
            return None
        return [message for key, message in found if key <= self.last]

    def _wake(self) -> None:
        still = []
        for key, future in self._waiters:
            if key <= self.last:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((key, future))
        self._waiters = still


def split_page(page: bytes) -> list[bytes]:
    """The messages of a catch-up page (`<length>:<message>` records, see `redis_lua.PAGE`)."""
    messages, position = [], 0
    while position < len(page):
        colon = page.index(b":", position)
        end = colon + 1 + int(page[position:colon])
        messages.append(page[colon + 1 : end])
        position = end
    return messages
