"""One SSE client: a bounded outgoing buffer that the router fills and the connection's own task drains.

The router never awaits a socket: it appends pre-encoded bytes here and wakes the writer. Frames that arrive while
the writer is busy are joined into one write. A client that falls more than the buffer limit behind is closed as
`slow`; it resumes from history when it reconnects.

When the server gave us the socket (`attach`, under `tidings serve`), events skip the writer task: each event's
shared, pre-chunked bytes are collected per connection and written straight to the transport once per event-loop
iteration (`flush`, run by the router), so a burst costs one write per connection, not one per event. The
transport's own buffer is then what the limit bounds.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ..auth import Principal
from ..clock import Clock
from ..wire import Envelope, http_chunk, parse_id

_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class BufferLimits:
    max_bytes: int = 1 << 20
    max_events: int = 1000


class Connection:
    """State of one open stream. Few attributes and no task of its own: at 10k clients objects are what cost."""

    __slots__ = (
        "_bytes", "_chunks", "_clock", "_events", "_limits", "_mark_dirty", "_pending", "_transport", "_waiter",
        "channels", "close_reason", "deadline", "endpoint", "id", "ip", "last_event_at", "last_write_at",
        "opened_at", "principal", "writer", "writing",
    )  # fmt: skip

    def __init__(
        self,
        principal: Principal,
        channels: Sequence[str],
        *,
        endpoint: str,
        limits: BufferLimits,
        clock: Clock,
        deadline: float | None = None,
        ip: str = "",
        replaying: bool = False,
    ) -> None:
        self.id = f"c{next(_ids)}"
        self.principal = principal
        self.channels = tuple(channels)
        self.endpoint = endpoint
        self.ip = ip
        self._clock = clock
        self.opened_at = self.last_event_at = self.last_write_at = clock()
        self.deadline = deadline
        self.close_reason: str | None = None
        self._limits = limits
        self._chunks: list[bytes] = []
        self._bytes = 0
        self._events = 0
        self._waiter: asyncio.Future[None] | None = None
        self._pending: list[Envelope] | None = [] if replaying else None
        self.writer: asyncio.Task[object] | None = None  # the task writing to the socket, if any
        self.writing = False  # True while that task is inside a socket write (which a stuck client blocks)
        self._transport: asyncio.WriteTransport | None = None
        self._mark_dirty: Callable[[Connection], None] | None = None

    @property
    def closed(self) -> bool:
        return self.close_reason is not None

    def push(self, envelope: Envelope) -> None:
        """Queue a live event (the router's call, once per recipient: keep it cheap)."""
        if self._pending is not None:
            self._pending.append(envelope)  # held until the replay before it has been queued
        elif self._mark_dirty is not None:
            if self.close_reason is None:
                if not self._chunks:
                    self._mark_dirty(self)  # the router flushes us once this loop iteration
                self._chunks.append(envelope.chunk)
                self.last_event_at = envelope.received_at
        else:
            self._enqueue(envelope.frame, envelope.received_at)

    def finish_replay(self, replayed: Iterable[Envelope], after: str | None) -> None:
        """Queue missed events, then the live ones held meanwhile, skipping any already replayed."""
        newest = parse_id(after) if after else (-1, -1)
        for envelope in replayed:
            key = parse_id(envelope.id)
            if key > newest:
                self._enqueue(envelope.frame, envelope.received_at)
                newest = key
        pending, self._pending = self._pending or [], None
        for envelope in pending:
            if parse_id(envelope.id) > newest:
                self._enqueue(envelope.frame, envelope.received_at)

    def send_comment(self, frame: bytes) -> None:
        """Queue a frame that is not an event (keepalive, reset, shutdown): it does not reset the idle clock."""
        self._enqueue(frame, None)

    def attach(self, transport: asyncio.WriteTransport, mark_dirty: Callable[[Connection], None]) -> None:
        """From now on write to `transport` directly; `mark_dirty` asks for a `flush` this loop iteration."""
        if self._chunks:  # what was queued while the response started: one chunk, written now, in order
            data = b"".join(self._chunks)
            self._chunks.clear()
            self._bytes = self._events = 0
            self._chunks.append(http_chunk(data))
        self._transport = transport
        self._mark_dirty = mark_dirty
        self.flush(self._clock())

    @property
    def attached(self) -> bool:
        return self._transport is not None

    def flush(self, now: float) -> None:
        """Write what was collected since the last flush (attached mode) as one write."""
        chunks, transport = self._chunks, self._transport
        if not chunks or transport is None:
            return
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        if transport.is_closing():
            return
        transport.write(data)
        self.last_write_at = now
        if transport.get_write_buffer_size() > self._limits.max_bytes:
            self.close("slow")

    def _enqueue(self, frame: bytes, event_at: float | None) -> None:
        """`event_at` is when the router received the event (None for comments): no clock read per recipient."""
        if self.close_reason is not None:
            return
        if self._mark_dirty is not None:
            if not self._chunks:
                self._mark_dirty(self)
            self._chunks.append(http_chunk(frame))
            if event_at is not None:
                self.last_event_at = event_at
            return
        self._chunks.append(frame)
        self._bytes += len(frame)
        if event_at is not None:
            self._events += 1
            self.last_event_at = event_at
        if self._bytes > self._limits.max_bytes or self._events > self._limits.max_events:
            self.close("slow")
            return
        self._wake()

    def close(self, reason: str) -> None:
        """Stop the stream after what is already queued; the first reason wins."""
        if self.close_reason is None:
            self.close_reason = reason
            if reason == "slow":
                self._chunks.clear()  # a client this far behind resumes from history instead
                self._bytes = 0
                if self._transport is not None:
                    self._transport.abort()  # drop what it never read; the server sees the disconnect
                if self.writing and self.writer is not None:
                    self.writer.cancel()  # it is blocked on a socket that stopped reading: let it go now
            else:
                self.flush(self._clock())  # attached: what was collected goes out before the stream ends
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_closed(self) -> None:
        """Return once the stream is closed (the attached mode's writer has nothing else to wait for)."""
        while self.close_reason is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def next_chunk(self) -> bytes | None:
        """Everything queued since the last call, as one write; None once closed and drained."""
        while not self._chunks:
            if self.close_reason is not None:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._bytes = 0
        self._events = 0
        self.last_write_at = self._clock()
        return chunk

    @property
    def buffered_bytes(self) -> int:
        return self._bytes
