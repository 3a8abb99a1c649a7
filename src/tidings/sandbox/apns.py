"""A local APNs: HTTP/2 with prior knowledge (h2c) on 127.0.0.1, built on `h2` over asyncio.

It checks what Apple checks (see apns_checks.py), answers Apple's statuses with `{"reason": ...}` bodies
(410 adds `timestamp`), echoes or assigns `apns-id`, records every request, and obeys the control API on a
separate HTTP/1.1 port (`control_url`): the rules of control.py, plus `POST /_sandbox/goaway`, which sends
GOAWAY (NO_ERROR, `{"reason":"Shutdown"}`) on every open connection and closes it, as Apple does when it
recycles a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any, cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import orjson
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ._server import UvicornServer, bind
from .apns_checks import ApnsAuth, Refusal, check_request
from .control import SandboxState, control_routes

Headers = dict[str, str]


class _Connection(asyncio.Protocol):
    def __init__(self, sandbox: ApnsSandbox) -> None:
        self.sandbox = sandbox
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
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
        await self.sandbox.state.pause(delay)
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


class ApnsSandbox:
    """`async with ApnsSandbox(key_id=, team_id=, public_key=) as sb:` then point APNs at `sb.url`."""

    def __init__(
        self,
        *,
        key_id: str,
        team_id: str,
        public_key: ec.EllipticCurvePublicKey,
        topics: frozenset[str] | None = None,
        clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
        control_port: int = 0,
    ) -> None:
        self.state = SandboxState(clock)
        self.auth = ApnsAuth(key_id, team_id, public_key, clock)
        self.topics = topics
        self.open: set[_Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.connections_opened = 0
        self._sock = bind(host, port)
        self.host, self.port = self._sock.getsockname()[:2]
        self._server: asyncio.Server | None = None
        routes = [*control_routes(self.state), Route("/_sandbox/goaway", self._goaway, methods=["POST"])]
        self._control = UvicornServer(Starlette(routes=routes), host=host, port=control_port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def control_url(self) -> str:
        return self._control.url

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), sock=self._sock)
        await self._control.start()

    async def stop(self) -> None:
        self.state.stopping.set()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 2)
        if self._server is not None:
            self._server.close()
            for connection in list(self.open):
                if connection.transport is not None:
                    connection.transport.close()
            await self._server.wait_closed()
        await self._control.stop()

    async def __aenter__(self) -> ApnsSandbox:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def goaway(self) -> int:
        """GOAWAY on every open connection; returns how many were closed."""
        connections = list(self.open)
        for connection in connections:
            connection.goaway()
        return len(connections)

    async def _goaway(self, request: Request) -> JSONResponse:
        return JSONResponse({"closed": self.goaway()})

    def handle(self, headers: Headers, body: bytes, connection: int) -> tuple[int, Headers, bytes, float]:
        """Decide the answer to one request: (status, headers, body, delay)."""
        apns_id = headers.get("apns-id") or str(uuid.uuid4())
        entry: dict[str, Any] = {
            "connection": connection,
            "path": headers.get(":path", ""),
            "token": headers.get(":path", "").rpartition("/")[2],
            "headers": {k: v for k, v in headers.items() if not k.startswith(":") and k != "authorization"},
            "body": body.decode(errors="replace"),
        }
        reply: Headers = {"apns-id": apns_id}
        rule = self.state.match(entry["token"])
        delay = rule.delay if rule else 0.0
        try:
            if rule is not None and rule.status != 200:
                raise Refusal(rule.status, rule.reason or "InternalServerError")
            method, path = headers.get(":method", ""), headers.get(":path", "")
            _, entry["payload"], entry["jwt"] = check_request(
                method, path, headers, body, auth=self.auth, topics=self.topics
            )
        except Refusal as refusal:
            entry.update(status=refusal.status, reason=refusal.reason)
            self.state.record(entry)
            answer: dict[str, Any] = {"reason": refusal.reason}
            if refusal.status == 410:
                answer["timestamp"] = int(self.state.clock() * 1000)
            if rule is not None and rule.retry_after is not None:
                reply["retry-after"] = rule.retry_after
            reply["content-type"] = "application/json"
            return refusal.status, reply, orjson.dumps(answer), delay
        entry.update(status=200, reason="")
        self.state.record(entry)
        reply["apns-unique-id"] = str(uuid.uuid4())
        return 200, reply, b"", delay
