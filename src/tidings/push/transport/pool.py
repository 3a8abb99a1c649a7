"""The HTTP/2 connections to one origin: a bounded number of them, stream slots handed out one waiter at a time.

A request takes a slot (`acquire`); when none is free it waits in one FIFO queue, and each freed slot wakes
exactly one waiter (not all of them). Connections are opened one at a time while requests wait and no
connection has room, up to `max_connections` usable ones. A tick (only while there is work) keeps them
honest: a connection silent while streams wait on it is PINGed and dropped if the PING goes unanswered, and a
connection that has had no free slot and finished no stream for `stall_after` seconds while requests wait
(MAX_CONCURRENT_STREAMS 0, every stream hanging) is retired, so that the next one is opened beside it.

A request that never reached the server (`NotSent`: refused, above a GOAWAY, closed before it was written) is
sent again on another connection; that is not an attempt. The caller's deadline bounds every wait here.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .connection import H2Protocol
from .deadlines import Deadlines
from .errors import Http2Unsupported, NotSent, TransportError
from .h2setup import Headers, Limits, Response
from .hpack_fast import Run

MAX_UNSENT_RESENDS = 10  # a server refusing every stream at once must not turn into a busy loop


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int
    authority: str

    @classmethod
    def parse(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) origin: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        default = port == (443 if parts.scheme == "https" else 80)
        return cls(
            parts.scheme, parts.hostname, port, parts.hostname if default else f"{parts.hostname}:{port}"
        )


@dataclass(frozen=True, slots=True)
class PoolSettings:
    max_connections: int = 4  # usable connections per origin
    connect_timeout: float = 10.0  # TCP + TLS + the server's SETTINGS
    ping_after: float = 5.0  # silence, with streams waiting, before a PING
    ping_timeout: float = 5.0  # an unanswered PING drops the connection
    stall_after: float = 2.0  # no free slot and no stream finished, while requests wait: replace it
    limits: Limits = field(default_factory=Limits)


class Ticket:
    """One request's progress, read when its deadline passes: was it sent, what was it waiting for."""

    __slots__ = ("resends", "sent", "waiting_for")

    def __init__(self) -> None:
        self.sent = False
        self.resends = 0
        self.waiting_for = "a connection"


class Pool:
    def __init__(
        self, origin: Origin, settings: PoolSettings, ssl_context: ssl.SSLContext | None, alpn: list[str]
    ) -> None:
        self.origin = origin
        self.settings = settings
        self.ssl_context = ssl_context
        self.alpn = alpn
        self.loop = asyncio.get_running_loop()
        self.deadlines = Deadlines(self.loop)  # of the requests to this origin
        self.connections: list[H2Protocol] = []
        self.connecting: asyncio.Task[None] | None = None
        self.waiters: deque[asyncio.Future[H2Protocol]] = deque()
        self.http1 = False  # the origin does not speak HTTP/2
        self.connections_opened = 0
        self.wakeups = 0  # waiters handed a slot (each exactly once)
        self.ticker: asyncio.TimerHandle | None = None
        self.tick = max(0.02, min(settings.ping_after, settings.ping_timeout, settings.stall_after) / 4)
        self.closed = False
        self.pseudo = Run(((b":scheme", origin.scheme.encode()), (b":authority", origin.authority.encode())))

    # --- requests ------------------------------------------------------------------------------------------
    async def request(self, headers: Headers, body: bytes, ticket: Ticket) -> Response:
        """Send on a free slot, again on another connection while it was never sent; the caller's deadline ends it."""
        while True:
            connection = self._take() or await self.acquire(ticket)
            try:
                ticket.waiting_for = "the response"
                stream_id, future = connection.start(headers, body)
                ticket.sent = True
                try:
                    return await future
                except asyncio.CancelledError:
                    ticket.sent = connection.cancel(stream_id)
                    raise
            except NotSent as exc:
                ticket.sent = False
                ticket.resends += 1
                if ticket.resends > MAX_UNSENT_RESENDS:
                    raise TransportError(
                        f"never sent after {ticket.resends} tries: {exc}", sent=False
                    ) from exc
            finally:
                self.release(connection)

    def _take(self) -> H2Protocol | None:
        """A free slot now, if there is one and nobody waits for one (first come, first served)."""
        if not self.waiters and not self.http1:
            for connection in self.connections:
                if connection.capacity > 0:
                    connection.reserved += 1
                    return connection
        return None

    async def acquire(self, ticket: Ticket) -> H2Protocol:
        """A connection with a stream slot reserved for the caller."""
        if self.http1:
            raise Http2Unsupported(f"{self.origin.authority} does not speak HTTP/2")
        connection = self._take()
        if connection is not None:
            return connection
        ticket.waiting_for = "a stream slot" if self.connections else "a connection"
        waiter: asyncio.Future[H2Protocol] = self.loop.create_future()
        self.waiters.append(waiter)
        self._grow()
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release(waiter.result())  # handed a slot just as the caller gave up: pass it on
            raise

    def release(self, connection: H2Protocol) -> None:
        connection.reserved -= 1
        if self.waiters:
            self._wake()

    # --- handing out slots ---------------------------------------------------------------------------------
    def _free(self) -> H2Protocol | None:
        for connection in self.connections:
            if connection.capacity > 0:
                return connection
        return None

    def _wake(self) -> None:
        """One waiter per free slot, in arrival order."""
        waiters = self.waiters
        while waiters:
            if waiters[0].done():  # cancelled while waiting
                waiters.popleft()
                continue
            connection = self._free()
            if connection is None:
                break
            connection.reserved += 1
            self.wakeups += 1
            waiters.popleft().set_result(connection)
        if waiters:
            self._grow()

    def _fail_waiters(self, error: TransportError) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    def on_change(self, connection: H2Protocol) -> None:
        """A connection got slots (SETTINGS) or stopped taking streams (GOAWAY, lost)."""
        if connection.transport is None and connection in self.connections:
            self.connections.remove(connection)
        if self.waiters:
            self._wake()

    # --- connections ---------------------------------------------------------------------------------------
    def _grow(self) -> None:
        self._ensure_ticker()
        if self.connecting is not None or self.closed or self._free() is not None:
            return
        if sum(1 for c in self.connections if c.usable) >= self.settings.max_connections:
            return
        self.connecting = self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            connection = await self._open()
        except Http2Unsupported as exc:
            self.http1 = True
            self._fail_waiters(exc)
        except (OSError, TimeoutError, TransportError, ssl.SSLError) as exc:
            if not any(c.usable for c in self.connections):
                self._fail_waiters(_connect_error(self.origin, exc))
        else:
            self.connections.append(connection)
            self.connections_opened += 1
        finally:
            self.connecting = None
        if self.waiters:
            self._wake()

    async def _open(self) -> H2Protocol:
        origin, context = self.origin, self.ssl_context
        if context is not None:
            # Set at every connect: httpx (the HTTP/1.1 fallback) sets its own ALPN on a context it is given.
            context.set_alpn_protocols(self.alpn)
        protocol: H2Protocol | None = None
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                _, protocol = await self.loop.create_connection(
                    lambda: H2Protocol(origin.authority, self.settings.limits, self.on_change),
                    origin.host,
                    origin.port,
                    ssl=context,
                    server_hostname=origin.host if context is not None else None,
                )
                if context is not None:
                    transport = protocol.transport
                    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
                    if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
                        raise Http2Unsupported(f"{origin.authority} did not agree to HTTP/2 (ALPN)")
                await protocol.ready
        except BaseException:
            if protocol is not None:
                protocol.abort("setup failed")  # a half-made connection must not linger
            raise
        return protocol

    # --- liveness ------------------------------------------------------------------------------------------
    def _ensure_ticker(self) -> None:
        if self.ticker is None and not self.closed:
            self.ticker = self.loop.call_later(self.tick, self._on_tick)

    def _on_tick(self) -> None:
        self.ticker = None
        now = self.loop.time()
        settings = self.settings
        for connection in list(self.connections):
            connection.check(now, settings.ping_after, settings.ping_timeout)
            if (
                self.waiters
                and connection.usable
                and connection.capacity <= 0
                and now - connection.last_progress > settings.stall_after
            ):
                connection.retire(f"no stream slot for {settings.stall_after:g} s")
        self.connections = [c for c in self.connections if c.transport is not None]
        if self.waiters:
            self._wake()
        if self.waiters or any(c.streams for c in self.connections):
            self._ensure_ticker()

    async def aclose(self) -> None:
        self.closed = True
        if self.ticker is not None:
            self.ticker.cancel()
            self.ticker = None
        if self.connecting is not None:
            self.connecting.cancel()
        self._fail_waiters(TransportError("transport closed", sent=False))
        for connection in self.connections:
            connection.retire("transport closed")
            if connection.transport is not None:
                connection.transport.close()
        self.connections.clear()


def _connect_error(origin: Origin, exc: BaseException) -> TransportError:
    if isinstance(exc, TransportError):
        return exc
    what = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
    return TransportError(f"cannot connect to {origin.authority}: {what}"[:300], sent=False)
