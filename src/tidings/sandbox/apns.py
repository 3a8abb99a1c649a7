"""A local APNs: HTTP/2 with prior knowledge (h2c) on 127.0.0.1, built on `h2` over asyncio.

TLS is optional (`ssl_context`: then `url` is https:// and ALPN offers h2, as Apple does).

It checks what Apple checks (see apns_checks.py), answers Apple's statuses with `{"reason": ...}` bodies
(410 adds `timestamp`), echoes or assigns `apns-id`, records every request, and obeys the control API on a
separate HTTP/1.1 port (`control_url`): the rules of control.py, plus `POST /_sandbox/goaway`, which sends
GOAWAY (NO_ERROR, `{"reason":"Shutdown"}`) on every open connection and closes it, as Apple does when it
recycles a connection.
"""

from __future__ import annotations

import ssl
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ._server import SandboxServers, UvicornServer
from .apns_checks import ApnsAuth, Refusal, check_request
from .control import SandboxState, control_routes
from .h2server import H2Server, Headers


class ApnsSandbox(SandboxServers):
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
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.state = SandboxState(clock)
        self.auth = ApnsAuth(key_id, team_id, public_key, clock)
        self.topics = topics
        self.h2 = H2Server(self.handle, self.state.pause, host=host, port=port, ssl_context=ssl_context)
        routes = [*control_routes(self.state), Route("/_sandbox/goaway", self._goaway, methods=["POST"])]
        self._control = UvicornServer(Starlette(routes=routes), host=host, port=control_port)

    @property
    def connections_opened(self) -> int:
        return self.h2.connections_opened

    def goaway(self) -> int:
        """GOAWAY on every open connection; returns how many were closed."""
        return self.h2.goaway()

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
                method, path, headers, body, auth=self.auth, topics=self.topics, connection=connection
            )
        except Refusal as refusal:
            if refusal.reason == "ExpiredProviderToken":  # also when a rule said so: a new token is due
                self.auth.expired(connection)
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
