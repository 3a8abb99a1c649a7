"""Local fan-out: an index from channel to this process's connections, and the sweep that keeps them honest.

`route` runs once per event per process: it parses the bus message into one SSE frame and hands the same bytes to
every recipient's buffer. Per-connection timers are replaced by one sweep a second that sends keepalives and
closes idle, expired and over-age streams.

The router owns the process-wide `StreamBudget` its connections report to (budget.py); the sweep hands the memory
of cut streams back to the system once enough of it was freed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import TYPE_CHECKING

from .. import metrics
from ..clock import Clock
from ..wire import KEEPALIVE, Envelope
from .budget import StreamBudget, release_free_memory
from .connection import Connection

if TYPE_CHECKING:
    from .mutes import StreamPolicy

log = logging.getLogger("tidings.streams")

STALLED_WRITE = 30.0  # a socket write blocked this long means the client stopped reading: cut it off
TRIM_AFTER_BYTES = 8 << 20  # freed by cut or ended streams since the last trim: worth giving back
_NOBODY: set[Connection] = set()


class Router:
    """Which local connections want which channel; per-user connection limits; the periodic sweep."""

    def __init__(
        self,
        *,
        keepalive: float,
        idle_timeout: float,
        clock: Clock,
        expire_history: Callable[[], int] | None = None,
        max_buffered_bytes: int = 0,
    ) -> None:
        """`max_buffered_bytes` caps what all streams of this process may hold (0 = no cap, only counted)."""
        self._index: dict[str, set[Connection]] = {}
        self._sessions: dict[tuple[str, str], deque[Connection]] = {}
        self._keepalive = keepalive
        self._keepalives: dict[str, float] = {}  # endpoints with a keepalive of their own (api: stream_route)
        self._idle_timeout = idle_timeout
        self._clock = clock
        self._expire_history = expire_history
        self._sweeper: asyncio.Task[None] | None = None
        self._empty = asyncio.Event()
        self._empty.set()
        self._dirty: list[Connection] = []  # attached connections with output collected this loop iteration
        self.budget = StreamBudget(max_buffered_bytes, clock)
        self.trims = 0
        self._total_at_trim = 0
        # Presence reports and the muted-scope filter (streams/mutes.py), set by the hub at start.
        self.policy: StreamPolicy | None = None
        # Observers of every routed event (the admin feed): called once per event with its local recipient
        # count, and only while one is registered, so an unwatched process pays one truth test per event.
        self.taps: list[Callable[[Envelope, int], None]] = []

    def __len__(self) -> int:
        return sum(len(q) for q in self._sessions.values())

    def connections(self) -> Iterator[Connection]:
        for queue in self._sessions.values():
            yield from queue

    def set_keepalive(self, endpoint: str, seconds: float) -> None:
        """Streams of `endpoint` get a keepalive after `seconds` of silence instead of the process default."""
        self._keepalives[endpoint] = seconds

    def add(self, conn: Connection, *, limit: int = 0) -> None:
        """Index a connection; beyond `limit` per user and endpoint the oldest is closed (a reloaded tab wins)."""
        for channel in conn.channels:
            self._index.setdefault(channel, set()).add(conn)
        session = self._sessions.setdefault((conn.endpoint, conn.principal.user_id), deque())
        session.append(conn)
        self._empty.clear()
        if self.policy is not None:
            self.policy.added(conn)
        while limit and len([c for c in session if not c.closed]) > limit:
            oldest = next(c for c in session if not c.closed)
            oldest.close("replaced")

    def remove(self, conn: Connection) -> None:
        self.budget.release(conn)
        for channel in conn.channels:
            members = self._index.get(channel)
            if members is not None:
                members.discard(conn)
                if not members:
                    del self._index[channel]
        key = (conn.endpoint, conn.principal.user_id)
        session = self._sessions.get(key)
        if session is not None and conn in session:
            session.remove(conn)
            if not session:
                del self._sessions[key]
            if self.policy is not None:  # once per stream: a second remove() finds it gone
                self.policy.removed(conn)
        if not self._sessions:
            self._empty.set()

    def members(self, channel: str) -> set[Connection]:
        """The local connections on `channel` (the index's own set: do not change it)."""
        return self._index.get(channel, _NOBODY)

    def route(self, envelope: Envelope) -> None:
        """Hand one event's frame to every local recipient; called in id order."""
        channels = envelope.channels
        if len(channels) == 1:
            recipients: set[Connection] = self._index.get(channels[0], set())
        else:
            recipients = set().union(*(self._index.get(channel, ()) for channel in channels))
        policy = self.policy
        held = 0
        if policy is not None and policy.active:  # something muted or loading here (else: no cost)
            recipients, held = policy.screen(envelope, recipients)
        for conn in recipients:
            conn.push(envelope)
        reached = len(recipients) + held  # a held stream gets it once its user's preferences are known
        metrics.observe_routed(envelope, reached)
        if self.taps:
            for tap in self.taps:
                tap(envelope, reached)

    def mark_dirty(self, conn: Connection) -> None:
        """Flush `conn` at the end of this loop iteration (one write per connection per burst of events)."""
        if not self._dirty:
            asyncio.get_running_loop().call_soon(self._flush)
        self._dirty.append(conn)

    def _flush(self) -> None:
        dirty, now = self._dirty, self._clock()
        self._dirty = []
        for conn in dirty:
            conn.flush(now)

    async def wait_empty(self) -> None:
        """Return once no connection is left."""
        await self._empty.wait()

    def close_where(self, predicate: Callable[[Connection], bool], reason: str) -> int:
        matched = [conn for conn in self.connections() if predicate(conn)]
        for conn in matched:
            conn.close(reason)
        return len(matched)

    def reset_all(self, frame: bytes) -> int:
        """Send `frame` (an `event: reset`) to every open stream, which then carries on live; returns how many.
        For a bus that lost events it cannot attribute to channels: any stream may have missed one."""
        reset = 0
        for conn in self.connections():
            if not conn.closed:
                conn.send_comment(frame)
                reset += 1
        return reset

    def sweep(self) -> None:
        """Keepalives for quiet streams; close idle, expired and over-age ones; forget history past its age."""
        if self._expire_history is not None:
            self._expire_history()
        self._trim_heap()  # first: what the last sweep's cuts freed has been freed by now
        self.budget.refresh()
        now = self._clock()
        keepalives, default_keepalive = self._keepalives, self._keepalive
        for conn in list(self.connections()):
            if conn.closed:
                continue
            expires = conn.principal.expires_at
            if expires is not None and now >= expires:
                conn.close("expired")
            elif conn.deadline is not None and now >= conn.deadline:
                conn.close("lifetime")
            elif self._idle_timeout and now - conn.last_event_at >= self._idle_timeout:
                conn.close("idle")
            elif conn.writing and now - conn.last_write_at >= STALLED_WRITE:
                conn.close("slow")
            elif not conn.buffered_bytes and now - conn.last_write_at >= (
                keepalives.get(conn.endpoint, default_keepalive) if keepalives else default_keepalive
            ):
                conn.send_comment(KEEPALIVE)

    def _trim_heap(self) -> None:
        """Give freed buffers back to the system when the buffered total moved or streams were cut.

        glibc keeps freed memory in its arenas (budget.py): without this, RSS stayed at its peak after the cut,
        and while non-readers built up their buffers RSS grew by ~2.5x what they held (with it: ~1.25x). At
        most once per sweep, and only after a change of `TRIM_AFTER_BYTES`: a trim walks the free lists (0.5 ms
        measured; ~140 ms the one time it returns 300 MB)."""
        budget = self.budget
        moved = abs(budget.total - self._total_at_trim)
        if budget.released >= TRIM_AFTER_BYTES or moved >= TRIM_AFTER_BYTES:
            budget.take_released()
            self._total_at_trim = budget.total
            if release_free_memory():
                self.trims += 1

    def start(self, period: float = 1.0) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(period), name="tidings-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep_forever(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                self.sweep()
            except Exception:  # the sweep must outlive any one bad connection
                log.exception("stream sweep failed")
