"""`inbox.changed` on this process's streams: when an inbox changes anywhere, its readers here get their new counts.

The hub hands over the channels whose inboxes changed (from the bus's `tidings.inbox` control message, so every
process hears of every change). The streams here on those channels — by the router's index for users, roles
and broadcasts; for a topic, the streams whose token names it (a topic item is in a reader's inbox by the
token's topics claim, not by what the stream asked for) — are grouped by reader (user, roles, topics), and each
reader is counted once, by a few workers, with the counts cache in front (`counts`). Each of the reader's
streams then gets one frame without an id (a state, not history: a resumed stream fetches counts instead):

    event: inbox.changed
    data: {"unseen": 3, "unread": 5, "by_category": {"orders": 2}}

Changes coalesce: a reader waiting to be counted is counted once however many changes arrive meanwhile, and a
change landing while it is being counted counts it again after, so the last frame always carries the latest
counts. A change of the user's mutes (`quiet=True`) is told only to readers whose counts it changed from what
they were last told — streams of apps that keep no inbox never see the event. A failing count (the database
is down) is logged at most every `WARN_EVERY` seconds and dropped: the next change, or the client's own fetch
on reconnect, brings the counts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress

import orjson

from ..clock import Clock
from ..inbox.errors import InvalidInboxInput
from ..inbox.models import Counts, Reader
from ..wire import sse_frame
from .connection import Connection
from .router import Router

log = logging.getLogger("tidings.streams")

EVENT = "inbox.changed"
NOT_TOLD = frozenset({"feed"})  # the dashboard's feed is not a user's stream (every other endpoint is)
WARN_EVERY = 10.0
MAX_TOLD = 100_000


def counts_body(counts: Counts) -> dict[str, object]:
    return {"unseen": counts.unseen, "unread": counts.unread, "by_category": counts.by_category}


def changed_frame(counts: Counts) -> bytes:
    return sse_frame(orjson.dumps(counts_body(counts)).decode(), event=EVENT)


def reader_of(conn: Connection) -> Reader | None:
    try:
        return Reader.of(conn.principal)
    except InvalidInboxInput:  # a token this inbox cannot read for (too many roles): nothing to tell
        return None


class InboxLive:
    """Per process and hub; `start()`/`stop()` with the hub."""

    def __init__(
        self,
        router: Router,
        counts: Callable[[Reader], Awaitable[Counts]],
        *,
        clock: Clock,
        concurrency: int = 4,
    ) -> None:
        self._router = router
        self._counts = counts
        self._clock = clock
        self._concurrency = concurrency
        self._dirty: dict[Reader, bool] = {}  # readers to count, in arrival order: quiet?
        self._told: dict[Reader, Counts] = {}  # what each reader's streams were told last
        self._busy: set[Reader] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._warned_at = float("-inf")
        self.sent = 0

    def changed(self, channels: Iterable[str], *, quiet: bool = False) -> None:
        """The inboxes on `channels` changed: count their readers here again and tell their streams (`quiet`:
        only if their counts differ from what they were told last)."""
        for conn in self._local(channels):
            reader = reader_of(conn)
            if reader is not None:
                self._dirty[reader] = quiet and self._dirty.get(reader, True)
        if self._dirty:
            self._wake.set()

    def _local(self, channels: Iterable[str]) -> set[Connection]:
        found: set[Connection] = set()
        topics: set[str] = set()
        for channel in channels:
            if channel.startswith("t:"):
                topics.add(channel[2:])
            else:
                found.update(self._router.members(channel))
        if topics:  # by the token's claim: a scan, but only for topic items
            found.update(
                c for c in self._router.connections() if not topics.isdisjoint(c.principal.topics.exact)
            )
        return {c for c in found if c.endpoint not in NOT_TOLD and not c.closed}

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._work(), name=f"tidings-inbox-live-{n}")
                for n in range(self._concurrency)
            ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError):
                await task

    async def _work(self) -> None:
        while True:
            found = self._next()
            if found is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            reader, quiet = found
            self._busy.add(reader)
            try:
                await self._tell(reader, quiet)
            finally:
                self._busy.discard(reader)
                if (
                    reader in self._dirty
                ):  # changed again meanwhile: a worker that found it busy went to sleep
                    self._wake.set()

    def _next(self) -> tuple[Reader, bool] | None:
        for reader, quiet in self._dirty.items():
            if reader not in self._busy:  # one count per reader at a time; a later change waits its turn
                del self._dirty[reader]
                return reader, quiet
        return None

    async def _tell(self, reader: Reader, quiet: bool) -> None:
        try:
            counts = await self._counts(reader)
        except Exception as exc:  # the database: the next change or the client's own fetch brings the counts
            now = self._clock()
            if now - self._warned_at >= WARN_EVERY:
                self._warned_at = now
                log.warning("inbox.changed: counting failed (%s); streams keep their last counts", exc)
            return
        if quiet and self._told.get(reader, counts) == counts:
            return
        frame = changed_frame(counts)
        told = 0
        for conn in list(self._router.members(f"u:{reader.user_id}")):
            if conn.endpoint not in NOT_TOLD and not conn.closed and reader_of(conn) == reader:
                conn.send_comment(frame)
                told += 1
        self.sent += told
        if told:
            if len(self._told) >= MAX_TOLD:  # readers whose streams are gone: forgotten in bulk, rarely
                self._told.clear()
            self._told[reader] = counts
        else:
            self._told.pop(reader, None)
