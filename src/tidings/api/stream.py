"""The SSE endpoint as a plain ASGI app: authenticate, resume, then write the connection's buffer until it ends.

It is not a FastAPI route on purpose: a stream is opened once and lives long, and at 10k clients the dependency
injection and response classes cost more than the stream itself. Nothing is sent before authentication,
authorization and the topic check have passed, so an error is always a complete JSON answer, never a half-open
stream. Under `tidings serve` (server/protocol.py) the socket is written by the router and the disconnect comes
from the protocol, so the ASGI task only waits for the end; under any other server the ASGI task drains the
connection's buffer through `send`, and one small task waits for the disconnect.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from .. import metrics
from ..auth import Principal
from ..errors import ApiError, TidingsError
from ..streams.connection import Connection
from .deps import request_token
from .errors import error_response
from .tickets import redeem_ticket

if TYPE_CHECKING:
    from ..hub import Hub

log = logging.getLogger("tidings.streams")

TRANSPORT_KEY = "tidings.transport"  # the scope extension our uvicorn protocol (server/protocol.py) fills in
WRITE_TIMEOUT = 30.0  # the last write of a closing stream may block this long before the socket is dropped
MAX_TOPICS = 100


class StreamEndpoint:
    """`GET /v1/events` and `GET /v1/admin/events` (and the admin feed, api/feed.py): one instance per path."""

    def __init__(
        self,
        hub: Hub,
        *,
        name: str,
        required_role: str | None,
        limit: int,
        keepalive: float | None = None,
    ) -> None:
        """`name` keys the per-user `limit` (0 = unlimited); `keepalive` (seconds) overrides the process's."""
        self._hub = hub
        self._name = name
        self._required_role = required_role
        self._limit = limit
        self._role_label = required_role or "user"
        if keepalive is not None:
            hub.streams.set_keepalive(name, keepalive)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        try:
            principal, topics = await self._admit(request)
        except TidingsError as exc:
            await error_response(exc)(scope, receive, send)
            return
        last_event_id = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        conn = self._open(principal, topics, ip=_client_ip(scope), replaying=bool(last_event_id))
        await self._serve(conn, last_event_id, scope, receive, send)

    def _open(self, principal: Principal, topics: list[str], *, ip: str, replaying: bool) -> Connection:
        """Register the stream with the router (the admin feed opens one that no event is routed to)."""
        return self._hub.open_stream(
            principal, topics, endpoint=self._name, limit=self._limit, ip=ip, replaying=replaying
        )

    async def _admit(self, request: Request) -> tuple[Principal, list[str]]:
        if self._hub.draining:
            raise ApiError(
                503, "shutting_down", "this server is restarting; reconnect", headers={"Retry-After": "1"}
            )
        settings = self._hub.settings
        ticket = request.query_params.get("ticket")
        if ticket is not None:  # a single-use stand-in for the JWT (api/tickets.py), for EventSource
            principal = await redeem_ticket(self._hub, ticket)
        else:
            principal = await self._hub.authenticate(
                request_token(request, settings.token_cookie), valid_for=settings.stream_min_token_seconds
            )
        if self._required_role and not principal.has_role(self._required_role):
            raise ApiError(403, "forbidden", f"this stream requires the role {self._required_role!r}")
        topics = parse_topics(request.query_params.get("topics"))
        for topic in topics:
            if not await self._hub.may_read_topic(principal, topic):
                raise ApiError(403, "forbidden", f"not allowed to read topic {topic!r}", field="topics")
        return principal, topics

    async def _serve(
        self, conn: Connection, last_event_id: str | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        hub = self._hub
        opened = metrics.stream_opened(self._role_label)
        extension = _own_socket(scope)
        watcher = None
        if extension is not None:  # our protocol reports the disconnect itself: no task per stream for it
            extension["on_lost"] = lambda: conn.close("client")
        else:
            watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
            watcher.add_done_callback(lambda _: conn.close("client"))
        log.info(
            "stream open",
            extra={
                "conn": conn.id,
                "user_id": conn.principal.user_id,
                "role": self._role_label,
                "ip": conn.ip,
                "endpoint": self._name,
            },
        )
        try:
            if last_event_id:
                await hub.resume(conn, last_event_id)
            await send({"type": "http.response.start", "status": 200, "headers": hub.stream_headers})
            await send({"type": "http.response.body", "body": hub.stream_preamble, "more_body": True})
            if extension is not None:
                conn.attach(extension["transport"], hub.streams.mark_dirty)
                await conn.wait_closed()
                completed = conn.close_reason != "slow" and await _finish(send)
            else:
                completed = await _write_until_closed(conn, send)
        finally:
            if watcher is not None:
                watcher.cancel()
            hub.streams.remove(conn)
            reason = conn.close_reason or "error"
            metrics.stream_closed(self._role_label, reason, opened)
            log.info(
                "stream close",
                extra={
                    "conn": conn.id,
                    "user_id": conn.principal.user_id,
                    "role": self._role_label,
                    "ip": conn.ip,
                    "reason": reason,
                    "duration": round(hub.clock() - conn.opened_at, 3),
                },
            )
        if not completed:
            conn.close("slow")  # returning without completing makes the server drop the socket


async def _write_until_closed(conn: Connection, send: Send) -> bool:
    """Write chunks until the connection closes; False if the client stopped reading (cut off as slow)."""
    conn.writer = asyncio.current_task()
    try:
        while (chunk := await conn.next_chunk()) is not None:
            conn.writing = True  # the router's sweep cuts off a write blocked too long (no timer per write)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            conn.writing = False
        # a client cut off as slow gets no orderly end: returning without one makes the server drop the socket
        return conn.close_reason != "slow" and await _finish(send)
    except asyncio.CancelledError:
        if conn.close_reason != "slow" or conn.writer is None:
            raise
        conn.writer.uncancel()  # our own cancellation (Connection.close): not a shutdown of the task
        return False
    finally:
        conn.writer = None


async def _finish(send: Send) -> bool:
    """End the chunked body; False if even that could not be written in WRITE_TIMEOUT."""
    try:
        async with asyncio.timeout(WRITE_TIMEOUT):
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    except TimeoutError:
        return False
    return True


def _own_socket(scope: Scope) -> dict[str, Any] | None:
    """Our protocol's extension (the socket, a disconnect hook) when the body is chunked HTTP/1.1 over it."""
    extension: dict[str, Any] | None = scope.get("extensions", {}).get(TRANSPORT_KEY)
    return extension if extension is not None and scope.get("http_version") == "1.1" else None


async def _wait_for_disconnect(receive: Receive) -> None:
    with suppress(Exception):
        while (await receive())["type"] != "http.disconnect":
            pass


def parse_topics(raw: str | None) -> list[str]:
    if not raw:
        return []
    topics = list(dict.fromkeys(t.strip() for t in raw.split(",") if t.strip()))
    if len(topics) > MAX_TOPICS:
        raise ApiError(400, "invalid_topics", f"at most {MAX_TOPICS} topics per stream", field="topics")
    for topic in topics:
        if len(topic) > 256 or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in topic):
            raise ApiError(400, "invalid_topics", f"invalid topic name {topic[:64]!r}", field="topics")
    return topics


def _client_ip(scope: Scope) -> str:
    client: Any = scope.get("client")
    return str(client[0]) if client else ""
