"""An HTTP/2 server on the `h2` library that misbehaves precisely, for the transport's conformance tests.

What it can do, per server: a MAX_CONCURRENT_STREAMS of its choosing (changed live with `set_max_streams`), a
tiny INITIAL_WINDOW_SIZE, 1xx answers before the final one, an oversized header on chosen requests, padded
DATA, trailers, headers large enough to need CONTINUATION frames, REFUSED_STREAM on every n-th stream, a
graceful or abrupt GOAWAY after n streams per connection, silence (no answer, not even to PING), and being
killed and restarted on the same port. Every request it *processed* is recorded by its `x-id` header in
`seen`, so a test can tell what the server saw from what it never did.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

MAX_ID = (1 << 31) - 1


class _PlainEncoder(hpack.Encoder):
    """No Huffman coding: hpack's pure-Python coder takes a quarter second for 40 KB, on the test's loop."""

    def encode(self, headers: Any, huffman: bool = False) -> bytes:
        return super().encode(headers, huffman=False)


@dataclass
class Behaviour:
    max_streams: int = 100
    window: int = 65535  # our receive window per stream (the client's bodies are flow-controlled by it)
    informational: int = 0  # 1xx answers before each final one
    big_header: int = 100_000  # bytes of `x-big` on requests whose path contains "big"
    header_size: int = 0  # bytes of `x-filler` on every answer (over 16 KiB: CONTINUATION frames)
    padding: int = 0  # pad DATA frames by this much
    trailers: bool = False
    refuse_every: int = 0  # REFUSED_STREAM on every n-th stream of a connection
    goaway_after: int = 0  # GOAWAY once a connection has taken this many streams
    abrupt: bool = False  # GOAWAY(INTERNAL_ERROR) and close at once, unanswered streams left hanging
    silent: bool = False  # after the handshake: read nothing, answer nothing
    delay: float = 0.0  # answer this much later (lets streams pile up)
    status: int = 200
    body: bytes = b'{"ok":true}'


@dataclass
class _Conn:
    h2c: h2.connection.H2Connection
    transport: asyncio.Transport
    streams: dict[int, tuple[dict[bytes, bytes], bytearray]] = field(default_factory=dict)
    taken: int = 0  # streams received
    last: int = MAX_ID  # after our GOAWAY: streams above it are ignored
    pending: int = 0  # answers not yet sent
    eof: bool = False  # we half-closed: nothing more to write


class H2Peer:
    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self.seen: Counter[str] = Counter()
        self.connections = 0
        self.open: list[_Conn] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> H2Peer:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        self._server = await asyncio.get_running_loop().create_server(lambda: _Protocol(self), sock=sock)
        return self

    async def kill(self) -> None:
        """As a crash: every connection dropped without a word, the port closed."""
        if self._server is not None:
            self._server.close()
        for conn in self.open:
            conn.transport.abort()
        self.open.clear()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def stop(self) -> None:
        await self.kill()

    def set_max_streams(self, value: int) -> None:
        self.behaviour.max_streams = value
        for conn in self.open:
            conn.h2c.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: value})
            conn.transport.write(conn.h2c.data_to_send())

    async def __aenter__(self) -> H2Peer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class _Protocol(asyncio.Protocol):
    def __init__(self, peer: H2Peer) -> None:
        self.peer = peer
        self.conn: _Conn | None = None
        self.handshaken = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        b = self.peer.behaviour
        config = h2.config.H2Configuration(client_side=False, validate_outbound_headers=False)
        h2c = h2.connection.H2Connection(config=config)
        h2c.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: b.max_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: b.window,
            },
        )
        if b.header_size:
            h2c.encoder = _PlainEncoder()
        h2c.initiate_connection()
        self.conn = _Conn(h2c, transport)  # type: ignore[arg-type]
        self.peer.open.append(self.conn)
        self.peer.connections += 1
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn in self.peer.open:
            self.peer.open.remove(self.conn)

    def flush(self) -> None:
        assert self.conn is not None
        data = self.conn.h2c.data_to_send()
        if data and not self.conn.transport.is_closing() and not self.conn.eof:
            self.conn.transport.write(data)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        assert conn is not None
        if self.peer.behaviour.silent and self.handshaken:
            return  # a peer that went quiet: no answers, no PING ACKs
        try:
            events = conn.h2c.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.flush()
            conn.transport.close()
            return
        for event in events:
            self.on_event(event)
        self.flush()

    def on_event(self, event: Any) -> None:
        conn, b = self.conn, self.peer.behaviour
        assert conn is not None
        if isinstance(event, h2.events.SettingsAcknowledged):
            self.handshaken = True
        elif isinstance(event, h2.events.RequestReceived):
            conn.taken += 1
            sid = event.stream_id
            if sid > conn.last:
                return  # above our GOAWAY: never processed
            if b.refuse_every and conn.taken % b.refuse_every == 0:
                conn.h2c.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
                return
            conn.streams[sid] = (dict(event.headers or []), bytearray())
            if b.goaway_after and conn.taken == b.goaway_after:
                self.goaway(sid)
        elif isinstance(event, h2.events.DataReceived):
            conn.h2c.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if event.stream_id in conn.streams:
                conn.streams[event.stream_id][1].extend(event.data)
        elif isinstance(event, h2.events.StreamEnded) and event.stream_id in conn.streams:
            headers, body = conn.streams.pop(event.stream_id)
            self.peer.seen[headers.get(b"x-id", b"").decode()] += 1
            conn.pending += 1
            if b.delay:
                asyncio.get_running_loop().call_later(b.delay, self.answer, event.stream_id, headers, body)
            else:
                self.answer(event.stream_id, headers, bytes(body))
        elif isinstance(event, h2.events.StreamReset):
            conn.streams.pop(event.stream_id, None)

    def goaway(self, last: int) -> None:
        conn, b = self.conn, self.peer.behaviour
        assert conn is not None
        conn.last = last
        self.flush()
        frame = GoAwayFrame(0)
        frame.last_stream_id = last
        frame.error_code = ErrorCodes.INTERNAL_ERROR if b.abrupt else ErrorCodes.NO_ERROR
        # Written around h2 (which would stop answering anything, see the transport's connection.py).
        conn.transport.write(frame.serialize())
        if b.abrupt:
            conn.transport.close()

    def answer(self, sid: int, headers: dict[bytes, bytes], body: bytes | bytearray) -> None:
        conn, b = self.conn, self.peer.behaviour
        assert conn is not None
        conn.pending -= 1
        if conn.transport.is_closing() or conn.eof:
            return
        h2c = conn.h2c
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            for i in range(b.informational):
                h2c.send_headers(sid, [(":status", "103" if i % 2 == 0 else "100"), ("link", "</a.css>")])
            reply = [(":status", str(b.status)), ("x-echo-length", str(len(body)))]
            if b.header_size:
                reply.append(("x-filler", "f" * b.header_size))
            if b"big" in headers.get(b":path", b""):
                reply.append(("x-big", "b" * b.big_header))
            payload = b.body
            if b"echo" in headers.get(b":path", b""):
                payload = bytes(body)
            h2c.send_headers(sid, reply, end_stream=not payload and not b.trailers)
            step = h2c.max_outbound_frame_size - (b.padding + 1 if b.padding else 0)
            for offset in range(0, len(payload), step):
                last = offset + step >= len(payload) and not b.trailers
                chunk = payload[offset : offset + step]
                h2c.send_data(sid, chunk, end_stream=last, pad_length=b.padding or None)
            if b.trailers:
                h2c.send_headers(sid, [("x-trailer", "done")], end_stream=True)
        self.flush()
        if conn.last != MAX_ID and not conn.streams and conn.pending == 0 and conn.transport.can_write_eof():
            # Graceful GOAWAY, everything at or below `last` answered: half-close and let the client hang up.
            # (close() with the client's frames still unread would send a TCP RST, and the client's kernel
            # would drop the answers it had not read yet.)
            conn.eof = True
            conn.transport.write_eof()
