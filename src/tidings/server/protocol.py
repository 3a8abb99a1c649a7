"""The HTTP protocol `tidings serve` runs: uvicorn's httptools protocol, plus the socket in the ASGI scope, plus
the limits that keep the server answering under hostile clients.

With the socket at hand, a stream's events are written straight to it from the router — the same pre-encoded
chunk for every recipient, no task wake-up and no ASGI `send` per event (bench/FINDINGS.md: those were most of
the remaining cost per delivery). The ASGI path stays for every other server and for apps that mount the hub:
`StreamEndpoint` uses the socket only when this protocol put it in the scope.

Each connection reports to its server's `HeaderGuard` (limits.py) while it is sending request headers: they must
arrive within `header_timeout` and `max_header_bytes` (else 408 / 431 and the connection is closed), the slowest
sender is closed when too many are pending or file descriptors run short, and a new connection's first request
is answered 503 + Retry-After when the process is within `fd_reserve` of its open-files limit — an answer where
the accept would otherwise have failed.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

import orjson
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from ..api.stream import TRANSPORT_KEY
from .limits import RETRY_AFTER_SECONDS, HeaderGuard, ServerLimits, guard_for


def _error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"error": code, "message": message, "field": None})


def _raw_response(status: int, code: str, message: str) -> bytes:
    """A complete answer written straight to the socket (the request never reached the app)."""
    body = _error_body(code, message)
    head = b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    return STATUS_LINE[status] + head + body


_OVERLOADED = _error_body("overloaded", "this server is at its connection limit; retry later")


async def overloaded(scope: Scope, receive: Receive, send: Send) -> None:
    """The app a new connection gets when the process is near its open-files limit."""
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(_OVERLOADED)).encode()),
        (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": _OVERLOADED})


class TidingsHttpProtocol(HttpToolsProtocol):
    """Exposes the connection's transport as `scope["extensions"]["tidings.transport"]["transport"]`, and calls
    the `on_lost` callable a stream may put there when the connection drops (so a stream needs no task waiting
    on `receive()` to learn of the disconnect). `limits` is set once per process by `serve` (a subclass in
    tests)."""

    limits: ClassVar[ServerLimits] = ServerLimits()

    # One attribute of our own, on purpose: uvicorn's protocol has 28, and past 30 an instance's attribute dict is
    # no longer shared with its siblings (Python 3.11: 296 → 1,584 bytes per connection, measured).
    _header_bytes = -1  # bytes of request headers received so far; -1 once they are complete

    @property
    def _guard(self) -> HeaderGuard:
        return guard_for(self.server_state, self.limits, self.loop)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        guard = self._guard
        guard.make_room(len(self.connections))
        self._header_bytes = 0
        guard.started(self)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_bytes >= 0:
            self._header_bytes += len(data)
            limit = self.limits.max_header_bytes
            if self._header_bytes > limit:
                self.refuse(431, "headers_too_large", f"the request headers are over {limit} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {TRANSPORT_KEY: {"transport": self.transport}}
        if self._header_bytes < 0:  # the next request on a kept-alive connection
            self._header_bytes = 0
            self._guard.started(self)

    def on_headers_complete(self) -> None:
        self._header_bytes = -1
        guard = self._guard
        guard.finished(self)
        first = self.cycle is None  # uvicorn makes one per request: none yet means a new connection
        if first and guard.near_fd_limit(len(self.connections)):
            guard.overloaded += 1
            # only a new connection is turned away: one already open keeps being served
            self.app = overloaded
        super().on_headers_complete()

    def refuse(self, status: int, code: str, message: str) -> None:
        """Answer a request that never completed its headers, and close the connection."""
        if self._header_bytes >= 0:
            self._header_bytes = -1
            self._guard.finished(self)
        if not self.transport.is_closing():
            self.transport.write(_raw_response(status, code, message))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_bytes >= 0:
            self._header_bytes = -1
            self._guard.finished(self)
        super().connection_lost(exc)
        scope = getattr(self, "scope", None)  # absent if the connection closed before a request began
        on_lost = scope["extensions"][TRANSPORT_KEY].get("on_lost") if scope else None
        if on_lost is not None:
            on_lost()
