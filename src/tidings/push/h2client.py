"""A small HTTP/2 client for one origin: requests multiplexed on one connection, framing written directly.

Why not httpx here: through httpx + httpcore + h2 a request costs ~1 ms of CPU (measured, bench/push), aioapns
on bare `h2` ~0.45 ms, and the issue asks for 3x aioapns's throughput. The protocol is small for a client
that only sends POSTs with small bodies, so this module writes frames itself and keeps the one part that is
easy to get subtly wrong, HPACK *decoding* (Huffman, the dynamic table), on the `hpack` library.

What it does (RFC 9113): prior knowledge on `http://` (h2c), ALPN `h2` on `https://`; SETTINGS (acked; peer's
MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE honoured), PING replies, connection- and
stream-level send flow control with queueing, WINDOW_UPDATE for what we receive, RST_STREAM, GOAWAY (streams
above the last id fail as `retryable`; the connection takes no new streams and a new one is opened), stream
ids up to 2^31 then a new connection, CONTINUATION and padding on receive. Deliberate limits: requests are
encoded as HPACK literals without indexing (no dynamic table on our side, so nothing to keep in step with the
peer at the cost of some bytes per request); no server push (disabled in SETTINGS); no priorities.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from dataclasses import dataclass
from typing import cast

import hpack

from .h2frames import (
    ACK,
    CANCEL,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    FRAME,
    GOAWAY,
    HEADERS,
    MAX_STREAM_ID,
    OUR_WINDOW,
    PADDED,
    PING,
    PREFACE,
    PRIORITY_FLAG,
    PUSH_PROMISE,
    REFUSED_STREAM,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    encode_headers,
    frame,
    literal,
    quick_status,
    string,
)

SWEEP_EVERY = 0.05  # how often a connection looks for streams past their deadline

__all__ = ["Connection", "H2Error", "H2Unsupported", "Response", "encode_headers", "literal"]


class H2Error(Exception):
    """A request that got no response; `retryable` when the server certainly did not process it."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class H2Unsupported(H2Error):
    """The server does not speak HTTP/2 on this origin (ALPN said no, or it answered in HTTP/1.x)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class _Stream:
    __slots__ = ("body", "deadline", "future", "headers", "sent_at", "window")

    def __init__(self, future: asyncio.Future[Response], window: int) -> None:
        self.future = future
        self.window = window
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.deadline = self.sent_at = 0.0


class Connection(asyncio.Protocol):
    """One HTTP/2 connection; `request` is safe to call from many tasks at once."""

    def __init__(self, authority: str, scheme: str) -> None:
        self.loop = asyncio.get_running_loop()
        self.request_prefix = (
            b"\x83" + (b"\x87" if scheme == "https" else b"\x86") + b"\x01" + string(authority.encode())
        )  # :method POST, :scheme, :authority (static-table names)
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = self.loop.create_future()
        self.closed = False  # no new streams (GOAWAY, lost, or ids used up)
        self.streams: dict[int, _Stream] = {}
        self.next_id = 1
        self.max_streams = 100  # until the peer's SETTINGS say otherwise
        self.waiting: deque[asyncio.Future[None]] = deque()
        self.send_window = 65535
        self.initial_window = 65535
        self.max_frame = 16384
        self.blocked: deque[tuple[int, bytes]] = deque()  # DATA waiting for flow-control credit
        self.received = 0
        self.decoder = hpack.Decoder()
        self.settings_acked = False  # our SETTINGS (HEADER_TABLE_SIZE 0) are in force
        self.buffer = bytearray()
        self.header_block: tuple[int, int, bytearray] | None = (
            None  # (stream, flags, fragments) awaiting END_HEADERS
        )
        self.out = bytearray()
        self.flush_scheduled = False
        self.sweeper: asyncio.TimerHandle | None = None
        self.last_received = 0.0

    # --- sending -------------------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        # Coalesce everything written in one loop iteration into one socket write.
        self.out += data
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(bytes(self.out))
        self.out.clear()

    async def request(self, path: bytes, headers: bytes, body: bytes, wait: float) -> Response:
        # `wait` is not `asyncio.timeout`: a deadline per stream, swept by one timer per connection, costs less
        # than a timer per request and lets the expiry also reset the stream (RST_STREAM).
        while len(self.streams) >= self.max_streams and not self.closed:
            waiter = self.loop.create_future()
            self.waiting.append(waiter)
            await waiter
        if self.closed:
            raise H2Error("connection closed before the request was sent", retryable=True)
        stream_id, self.next_id = self.next_id, self.next_id + 2
        if self.next_id > MAX_STREAM_ID:
            self.closed = True
        stream = _Stream(self.loop.create_future(), self.initial_window)
        stream.sent_at = self.loop.time()
        stream.deadline = stream.sent_at + wait
        self.streams[stream_id] = stream
        if self.sweeper is None:
            self.sweeper = self.loop.call_later(SWEEP_EVERY, self._sweep)
        block = self.request_prefix + b"\x04" + string(path) + headers
        self.write(frame(HEADERS, END_HEADERS | (0 if body else END_STREAM), stream_id, block))
        if body:
            self._send_data(stream_id, stream, body)
        try:
            return await stream.future
        except asyncio.CancelledError:
            # The caller gave up (its own timeout, shutdown): free the stream now rather than at the deadline.
            if self.streams.pop(stream_id, None) is not None:
                self.write(frame(RST_STREAM, 0, stream_id, struct.pack("!L", CANCEL)))
                self._wake()
            raise

    def _sweep(self) -> None:
        now = self.loop.time()
        expired = [(i, stream) for i, stream in self.streams.items() if stream.deadline <= now]
        for stream_id, stream in expired:
            if self.last_received < stream.sent_at:
                # Not one byte since this stream went out: a dead connection (NAT timeout, a peer gone without
                # a FIN). Take no new streams on it; the pool opens a fresh one for the next request.
                self.closed = True
            self._timeout(stream_id)
        self.sweeper = self.loop.call_later(SWEEP_EVERY, self._sweep) if self.streams else None

    def _send_data(self, stream_id: int, stream: _Stream, body: bytes) -> None:
        if self.blocked:  # keep DATA in order behind earlier streams waiting for credit
            self.blocked.append((stream_id, body))
            return
        sent = self._write_data(stream_id, stream, body)
        if sent < len(body):
            self.blocked.append((stream_id, body[sent:]))

    def _write_data(self, stream_id: int, stream: _Stream, body: bytes) -> int:
        """Write as much of `body` as both flow-control windows allow; return how much."""
        sent = 0
        while sent < len(body):
            size = min(len(body) - sent, self.send_window, stream.window, self.max_frame)
            if size <= 0:
                break
            chunk, sent = body[sent : sent + size], sent + size
            self.send_window -= size
            stream.window -= size
            self.write(frame(DATA, END_STREAM if sent == len(body) else 0, stream_id, chunk))
        return sent

    def _unblock(self) -> None:
        while self.blocked:
            stream_id, body = self.blocked[0]
            stream = self.streams.get(stream_id)
            if stream is not None:
                sent = self._write_data(stream_id, stream, body)
                if sent < len(body):
                    self.blocked[0] = (stream_id, body[sent:])
                    return
            self.blocked.popleft()

    def _timeout(self, stream_id: int) -> None:
        self.write(frame(RST_STREAM, 0, stream_id, struct.pack("!L", CANCEL)))
        self._finish(stream_id, TimeoutError("no response in time"))

    def _finish(self, stream_id: int, outcome: Response | BaseException) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is not None and not stream.future.done():
            if isinstance(outcome, BaseException):
                stream.future.set_exception(outcome)
            else:
                stream.future.set_result(outcome)
        self._wake()

    def _wake(self) -> None:
        while self.waiting and len(self.streams) < self.max_streams:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
        if self.closed and not self.streams and self.transport is not None:
            self.transport.close()

    # --- connection life -----------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        # HEADER_TABLE_SIZE 0 (see quick_status), ENABLE_PUSH 0, INITIAL_WINDOW_SIZE
        settings = struct.pack("!HLHLHL", 0x1, 0, 0x2, 0, 0x4, OUR_WINDOW)
        self.write(PREFACE + frame(SETTINGS, 0, 0, settings))
        self.write(frame(WINDOW_UPDATE, 0, 0, struct.pack("!L", OUR_WINDOW - 65535)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        if not self.ready.done():
            self.ready.set_exception(H2Error(f"connection lost during setup: {exc}", retryable=True))
        for stream_id in list(self.streams):
            self._finish(stream_id, H2Error(f"connection lost: {exc or 'closed by peer'}"))
        for waiter in self.waiting:
            if not waiter.done():
                waiter.set_result(None)

    # --- receiving -----------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self.last_received = self.loop.time()
        buffer = self.buffer
        buffer += data
        if (
            not self.ready.done()
            and len(buffer) >= 9
            and (buffer.startswith(b"HTTP/") or buffer[3] != SETTINGS)
        ):
            # The server's first frame must be SETTINGS; "HTTP/1.1 400" means it does not do h2c.
            self.ready.set_exception(H2Unsupported(f"not an HTTP/2 server: {bytes(buffer[:40])!r}"))
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            return
        offset = 0
        while len(buffer) - offset >= 9:
            high, low, kind, flags, stream_id = FRAME.unpack_from(buffer, offset)
            size = (high << 16) | low
            if len(buffer) - offset < 9 + size:
                break
            payload = bytes(buffer[offset + 9 : offset + 9 + size])
            offset += 9 + size
            self._on_frame(kind, flags, stream_id & MAX_STREAM_ID, payload)
        del buffer[:offset]

    def _on_frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self.header_block is not None and kind != CONTINUATION:
            return self._fail_connection("expected CONTINUATION")
        if kind == DATA:
            self._on_data(flags, stream_id, payload)
        elif kind in (HEADERS, CONTINUATION):
            self._on_headers(kind, flags, stream_id, payload)
        elif kind == SETTINGS:
            if flags & ACK:
                self.settings_acked = True
            else:
                self._on_settings(payload)
        elif kind == WINDOW_UPDATE:
            self._on_window_update(stream_id, struct.unpack("!L", payload)[0] & MAX_STREAM_ID)
        elif kind == PING and not flags & ACK:
            self.write(frame(PING, ACK, 0, payload))
        elif kind == RST_STREAM:
            code = struct.unpack("!L", payload)[0]
            self._finish(
                stream_id, H2Error(f"stream reset by peer (code {code})", retryable=code == REFUSED_STREAM)
            )
        elif kind == GOAWAY:
            self._on_goaway(payload)
        elif kind == PUSH_PROMISE:
            self._fail_connection("PUSH_PROMISE although push is disabled")
        return None  # PRIORITY, SETTINGS acks and unknown frame types are ignored, as RFC 9113 allows

    def _on_window_update(self, stream_id: int, increment: int) -> None:
        if stream_id == 0:
            self.send_window += increment
        elif stream_id in self.streams:
            self.streams[stream_id].window += increment
        self._unblock()

    def _on_data(self, flags: int, stream_id: int, payload: bytes) -> None:
        self.received += len(payload)
        if self.received >= OUR_WINDOW // 2:
            self.write(frame(WINDOW_UPDATE, 0, 0, struct.pack("!L", self.received)))
            self.received = 0
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        if flags & PADDED:
            payload = payload[1 : len(payload) - payload[0]]
        stream.body += payload
        if flags & END_STREAM:
            self._complete(stream_id, stream)

    def _on_headers(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if kind == HEADERS:
            if flags & PADDED:
                payload = payload[1 : len(payload) - payload[0]]
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
            self.header_block = (stream_id, flags, bytearray(payload))
        elif self.header_block is not None:
            self.header_block[2].extend(payload)
        if not flags & END_HEADERS or self.header_block is None:
            return
        stream_id, first_flags, fragments = self.header_block
        self.header_block = None
        block = bytes(fragments)
        status = None
        if self.settings_acked and self.decoder.header_table_size == 0:
            status = quick_status(block)  # the peer's table is empty: a block may go undecoded
        if status is not None and 200 <= status < 300:
            headers: list[tuple[bytes, bytes]] = [(b":status", str(status).encode())]
        else:
            try:
                headers = cast(list[tuple[bytes, bytes]], self.decoder.decode(block, raw=True))
            except hpack.HPACKError as exc:
                return self._fail_connection(f"HPACK: {exc}")
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.headers.extend(headers)
            if first_flags & END_STREAM:
                self._complete(stream_id, stream)

    def _complete(self, stream_id: int, stream: _Stream) -> None:
        status = next((v for k, v in stream.headers if k == b":status"), b"")
        if status.startswith(b"1"):  # an informational response: the final one follows
            stream.headers.clear()
            return
        self._finish(stream_id, Response(int(status or 0), stream.headers, bytes(stream.body)))

    def _on_settings(self, payload: bytes) -> None:
        for offset in range(0, len(payload) - 5, 6):
            key, value = struct.unpack_from("!HL", payload, offset)
            if key == 0x3:
                self.max_streams = value
            elif key == 0x4:
                delta, self.initial_window = value - self.initial_window, value
                for stream in self.streams.values():
                    stream.window += delta
            elif key == 0x5:
                self.max_frame = value
        self.write(frame(SETTINGS, ACK, 0))
        if not self.ready.done():
            self.ready.set_result(None)
        self._wake()  # a larger MAX_CONCURRENT_STREAMS frees waiting requests
        self._unblock()

    def _on_goaway(self, payload: bytes) -> None:
        last_id, code = struct.unpack_from("!LL", payload)
        last_id &= MAX_STREAM_ID
        self.closed = True
        for stream_id in [s for s in self.streams if s > last_id]:
            self._finish(stream_id, H2Error(f"GOAWAY (code {code}) before this stream", retryable=True))
        if not self.streams and self.transport is not None:
            self.transport.close()

    def _fail_connection(self, why: str) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        for stream_id in list(self.streams):
            self._finish(stream_id, H2Error(f"protocol error: {why}"))
