"""An HTTP/2 server with prior knowledge (h2c) on asyncio and the `h2` library, for the sandboxes.

A handler sees each complete request (headers with pseudo-headers, body, connection number) and returns
(status, headers, body, delay); a delay answers later without holding up other streams. `goaway()` sends
GOAWAY (NO_ERROR, `{"reason":"Shutdown"}`, as APNs does) on every open connection and closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from typing import cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from ._server import bind

Headers = dict[str, str]
Answer = tuple[int, Headers, bytes, float]
Handler = Callable[[Headers, bytes, int], Answer]


class _Connection(asyncio.Protocol):
    def __init__(self, server: H2Server) -> None:
        self.sandbox = server
        # Inbound headers are validated as a real server would; our own answers are known-good, so their
        # validation (a third of the sandbox's time per request) is skipped.
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding="utf-8",
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.h2 = h2.connection.H2Connection(config=config)
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, tuple[Headers, bytearray]] = {}
        self.number = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.number = self.sandbox.connections_opened = self.sandbox.connections_opened + 1
        self.sandbox.open.add(self)
        self.h2.local_settings = h2.settings.Settings(
            client=False, initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000}
        )
        self.h2.initiate_connection()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.sandbox.open.discard(self)
        self.transport = None

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.flush()
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            self._on_event(event)
        self.flush()

    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived) and event.stream_id is not None:
            headers = {str(k): str(v) for k, v in event.headers or ()}
            self.streams[event.stream_id] = (headers, bytearray())
        elif isinstance(event, h2.events.DataReceived) and event.stream_id in self.streams:
            self.streams[event.stream_id][1].extend(event.data or b"")
            self.h2.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded) and event.stream_id in self.streams:
            headers, body = self.streams.pop(event.stream_id)
            self._answer(event.stream_id, headers, bytes(body))
        elif isinstance(event, h2.events.StreamReset):
            self.streams.pop(event.stream_id or 0, None)
        elif isinstance(event, h2.events.ConnectionTerminated) and self.transport is not None:
            self.transport.close()

    def _answer(self, stream_id: int, headers: Headers, body: bytes) -> None:
        status, reply_headers, reply, delay = self.sandbox.handle(headers, body, self.number)
        if delay > 0:
            task = asyncio.get_running_loop().create_task(
                self._answer_later(stream_id, status, reply_headers, reply, delay)
            )
            self.sandbox.tasks.add(task)
            task.add_done_callback(self.sandbox.tasks.discard)
        else:
            self._respond(stream_id, status, reply_headers, reply)

    async def _answer_later(
        self, stream_id: int, status: int, headers: Headers, body: bytes, delay: float
    ) -> None:
        await self.sandbox.pause(delay)
        self._respond(stream_id, status, headers, body)
        self.flush()

    def _respond(self, stream_id: int, status: int, headers: Headers, body: bytes) -> None:
        if self.transport is None:
            return
        try:
            self.h2.send_headers(stream_id, [(":status", str(status)), *headers.items()], end_stream=not body)
            if body:
                self.h2.send_data(stream_id, body, end_stream=True)
        except h2.exceptions.H2Error:  # the client reset the stream (it timed out) or the connection is gone
            return

    def goaway(self) -> None:
        self.h2.close_connection(error_code=0, additional_data=b'{"reason":"Shutdown"}')
        self.flush()
        if self.transport is not None:
            self.transport.close()


class H2Server:
    def __init__(
        self,
        handler: Handler,
        pause: Callable[[float], Awaitable[None]],
        *,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """With `ssl_context`, HTTP/2 over TLS (ALPN h2 is set on it) instead of h2c."""
        self.handle = handler
        self.ssl_context = ssl_context
        if ssl_context is not None:
            ssl_context.set_alpn_protocols(["h2"])
        self.pause = pause
        self.open: set[_Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.connections_opened = 0
        self._sock = bind(host, port)
        self.host, self.port = self._sock.getsockname()[:2]
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), sock=self._sock, ssl=self.ssl_context
        )

    async def stop(self) -> None:
        """Call after the pause function has been told to stop, so delayed answers end at once."""
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, 2)
        if self._server is not None:
            self._server.close()
            for connection in list(self.open):
                if connection.transport is not None:
                    connection.transport.close()
            await self._server.wait_closed()

    def goaway(self) -> int:
        """GOAWAY on every open connection; returns how many were closed."""
        connections = list(self.open)
        for connection in connections:
            connection.goaway()
        return len(connections)
