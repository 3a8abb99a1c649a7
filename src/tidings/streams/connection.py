"""One SSE client: a bounded outgoing buffer that the router fills and the connection's own task drains.

The router never awaits a socket: it appends pre-encoded bytes here and wakes the writer. Frames that arrive while
the writer is busy are joined into one write. A client that falls more than the buffer limit behind is closed as
`slow`; it resumes from history when it reconnects.

When the server gave us the socket (`attach`, under `tidings serve`), events skip the writer task: each event's
shared, pre-chunked bytes are collected per connection and written straight to the transport once per event-loop
iteration (`flush`, run by the router), so a burst costs one write per connection, not one per event, and the
bytes a slow client has not taken yet are the shared chunks themselves, not a copy per connection. The
transport's own buffer is then what the limit bounds.

Every connection also reports what it holds to the process-wide `StreamBudget` (`BufferLimits.budget`): the
transport's buffer after each write when attached, its own queued chunks otherwise — only when that number
changes, so a client that keeps up costs the budget nothing per event. A replay larger than the stream's own
limit becomes `event: reset` instead: cutting it would only make the client ask for the same replay again.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass

from ..auth import Principal
from ..clock import Clock
from ..wire import HISTORY_UNAVAILABLE, Envelope, http_chunk, parse_id, reset_frame
from .budget import StreamBudget

_ids = itertools.count(1)


JOIN_AT_MOST = 16 * 1024  # a burst up to this size is joined into one write (a copy per stream, if it waits)
_DROP_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close discards the kernel's send queue


@dataclass(frozen=True, slots=True)
class BufferLimits:
    max_bytes: int = 512 * 1024
    max_events: int = 1000
    budget: StreamBudget | None = None  # the process-wide account every connection reports to
    send_buffer: int = 0  # SO_SNDBUF of an attached stream's socket (0 = the kernel's autotuning)


class Connection:
    """State of one open stream. Few attributes and no task of its own: at 10k clients objects are what cost."""

    __slots__ = (
        "_bytes", "_chunks", "_clock", "_events", "_limits", "_mark_dirty", "_pending", "_transport", "_waiter",
        "behind_since", "channels", "close_reason", "counted", "deadline", "endpoint", "id", "ip", "last_event_at",
        "last_write_at", "opened_at", "principal", "writer", "writing",
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
        self.counted = 0  # bytes this connection holds in the process budget (the budget keeps it)
        self.behind_since = 0.0  # when `counted` last went from 0 to more (the budget's clock)
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

    @property
    def replaying(self) -> bool:
        """True while live events are held for a replay that has not been queued yet."""
        return self._pending is not None

    def hold(self) -> None:
        """Hold live events from now on, until `finish_replay` (a recovery is about to read what was missed)."""
        if self._pending is None:
            self._pending = []

    def finish_replay(
        self, replayed: Iterable[Envelope], after: str | None, reason: str = HISTORY_UNAVAILABLE
    ) -> None:
        """Queue missed events, then the live ones held meanwhile, skipping any already replayed.

        A replay larger than this stream may buffer is replaced by `event: reset` (with `reason`): queued, it
        would close the stream as slow, and the client would reconnect asking for the same replay, forever."""
        newest = parse_id(after) if after else (-1, -1)
        missed: list[Envelope] = []
        size = 0
        for envelope in replayed:
            key = parse_id(envelope.id)
            if key > newest:
                missed.append(envelope)
                size += len(envelope.frame)
                newest = key
        if size > self._limits.max_bytes or len(missed) > self._limits.max_events:
            self._enqueue(reset_frame(reason), None)
            missed = []
        for envelope in missed:
            self._enqueue(envelope.frame, envelope.received_at)
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
        if self._limits.send_buffer:
            _set_send_buffer(transport, self._limits.send_buffer)
        self.flush(self._clock())

    @property
    def attached(self) -> bool:
        return self._transport is not None

    def flush(self, now: float) -> None:
        """Write what was collected since the last flush (attached mode) as one write."""
        chunks, transport = self._chunks, self._transport
        if not chunks or transport is None:
            return
        if transport.is_closing():
            chunks.clear()
            return
        if len(chunks) == 1:
            transport.write(chunks[0])
        elif self.counted or sum(map(len, chunks)) > JOIN_AT_MOST:
            # behind, or a burst: it may wait in the transport, where uvloop keeps the shared chunks by reference
            # (joined, 3,000 streams that never read held a 420 KB copy each: 1.35 GB)
            transport.writelines(chunks)
        else:  # small, to a client that keeps up: one joined write is the cheaper syscall
            transport.write(b"".join(chunks))
        chunks.clear()  # (transports copy or reference the items, never keep the list)
        self.last_write_at = now
        size = transport.get_write_buffer_size()
        if size > self._limits.max_bytes:
            self.close("slow")
        elif size != self.counted:  # a client that keeps up stays at 0: no budget work per event
            self._account(size)

    def measure(self) -> None:
        """Report the current size to the budget (attached: the transport may have drained since the last write)."""
        size = self._bytes
        if self._transport is not None and not self._transport.is_closing():
            size = self._transport.get_write_buffer_size()
        if size != self.counted:
            self._account(size)

    def _account(self, size: int) -> None:
        budget = self._limits.budget
        if budget is not None:
            budget.update(self, size)

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
        self._account(self._bytes)
        self._wake()

    def close(self, reason: str) -> None:
        """Stop the stream after what is already queued; the first reason wins.

        `slow` drops everything now, even on a stream already closing for another reason: its buffers (ours, the
        transport's and the kernel's send queue) are freed at once, and it resumes from history."""
        first = self.close_reason is None
        if first:
            self.close_reason = reason
        if reason == "slow":
            self._drop(cancel_writer=first)
        elif first:
            self.flush(self._clock())  # attached: what was collected goes out before the stream ends
        if first:
            self._wake()

    def _drop(self, *, cancel_writer: bool) -> None:
        self._chunks.clear()
        self._bytes = 0
        budget = self._limits.budget
        if budget is not None:
            budget.release(self)
        transport = self._transport
        if transport is not None and not transport.is_closing():
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with suppress(OSError):  # without it the kernel keeps trying to send what it holds
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _DROP_ON_CLOSE)
            transport.abort()  # drop what it never read; the server sees the disconnect
        if cancel_writer and self.writing and self.writer is not None:
            self.writer.cancel()  # it is blocked on a socket that stopped reading: let it go now

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
        if self.counted:
            self._account(0)  # handed to the server, whose own flow control bounds it from here
        self.last_write_at = self._clock()
        return chunk

    @property
    def buffered_bytes(self) -> int:
        return self._bytes


def _set_send_buffer(transport: asyncio.WriteTransport, size: int) -> None:
    """Bound what the kernel holds for this socket: autotuned, a client that stops reading gets megabytes of it."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
