"""A local push service for Web Push: mints subscriptions, checks VAPID, decrypts what it receives.

    POST /_sandbox/subscriptions            {"application_server_key"?: <base64url>, "http1"?: bool} ->
                                            {"endpoint", "keys": {"p256dh", "auth"}}   (what a browser gives)
    DELETE /_sandbox/subscriptions/{id}     the subscription expires: its endpoint answers 410 from then on
    POST /push/{id}                         RFC 8030 delivery: 201 Created, or the push service's errors

Push endpoints are served twice, as real push services do: over HTTP/2 (h2c, prior knowledge) on `url`, and
over HTTP/1.1 on `control_url` (with the control API). Subscriptions point at `url` unless `http1` is asked for.

A push is checked as a push service does: a TTL header (400 without), `Content-Encoding: aes128gcm`,
`Authorization: vapid t=<ES256 JWT>, k=<key>` with `aud` = this origin, `exp` in the next 24 h and a
`mailto:`/`https:` `sub` (401 otherwise; 403 when `k` is not the key the subscription was made with), a body
of at most 4096 bytes (413) that decrypts with the subscription's private key (400 otherwise). The record
holds the decrypted plaintext. Rules (control.py) match the endpoint URL or the subscription id.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..push import ece
from ._server import SandboxServers, UvicornServer
from .control import SandboxState, control_routes
from .h2server import Answer, H2Server

MAX_BODY = 4096
URGENCIES = frozenset({"very-low", "low", "normal", "high"})


@dataclass(slots=True)
class Subscription:
    id: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    application_server_key: str | None
    expired: bool = False


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class WebPushSandbox(SandboxServers):
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
        http1_port: int = 0,
    ) -> None:
        self.state = SandboxState(clock)
        self.subscriptions: dict[str, Subscription] = {}
        self._messages = 0
        self._vapid_ok: dict[str, dict[str, Any]] = {}  # verified header -> claims (push services cache too)
        routes = [
            Route("/_sandbox/subscriptions", self._subscribe, methods=["POST"]),
            Route("/_sandbox/subscriptions/{sid}", self._expire, methods=["DELETE"]),
            Route("/push/{sid}", self._push_http1, methods=["POST"]),
            *control_routes(self.state),
        ]
        self._control = UvicornServer(Starlette(routes=routes), host=host, port=http1_port)
        self.h2 = H2Server(self._push_h2, self.state.pause, host=host, port=port)

    def subscribe(self, application_server_key: str | None = None, *, http1: bool = False) -> dict[str, Any]:
        """A new subscription as `PushSubscription.toJSON()` gives it."""
        sid = secrets.token_urlsafe(12)
        key = ec.generate_private_key(ec.SECP256R1())
        endpoint = f"{self.control_url if http1 else self.url}/push/{sid}"
        sub = Subscription(sid, endpoint, key, secrets.token_bytes(16), application_server_key)
        self.subscriptions[sid] = sub
        return {
            "endpoint": endpoint,
            "keys": {
                "p256dh": ece.b64url_encode(ece.public_bytes(key.public_key())),
                "auth": ece.b64url_encode(sub.auth),
            },
        }

    async def _subscribe(self, request: Request) -> Response:
        raw = await request.body()
        options = orjson.loads(raw) if raw.strip() else {}
        sub = self.subscribe(options.get("application_server_key"), http1=bool(options.get("http1")))
        return JSONResponse(sub, status_code=201)

    async def _expire(self, request: Request) -> Response:
        sub = self.subscriptions.get(request.path_params["sid"])
        if sub is None:
            return JSONResponse({"error": "unknown subscription"}, status_code=404)
        sub.expired = True
        return Response(status_code=204)

    async def _push_http1(self, request: Request) -> Response:
        status, headers, body, delay = self.deliver(
            request.path_params["sid"], self.control_url, request.headers, await request.body()
        )
        await self.state.pause(delay)
        return Response(body, status, headers)

    def _push_h2(self, headers: dict[str, str], body: bytes, connection: int) -> Answer:
        path = headers.get(":path", "")
        if headers.get(":method") != "POST" or not path.startswith("/push/"):
            return 404, {"content-type": "application/json"}, b'{"error": "not found"}', 0.0
        return self.deliver(path[len("/push/") :], self.url, headers, body)

    def deliver(self, sid: str, origin: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """One push as the push service sees it: (status, headers, body, delay), recorded."""
        sub = self.subscriptions.get(sid)
        endpoint = sub.endpoint if sub is not None else f"{origin}/push/{sid}"
        entry: dict[str, Any] = {"token": endpoint, "subscription": sid, "headers": dict(headers)}
        for name in ("authorization", ":method", ":path", ":scheme", ":authority"):
            entry["headers"].pop(name, None)
        rule = self.state.match(endpoint) or self.state.match(sid)
        delay = rule.delay if rule is not None else 0.0
        try:
            if rule is not None and rule.status >= 300:
                raise Refused(rule.status, rule.reason or "sandbox rule")
            entry.update(self._accept(sub, origin, headers, body))
        except Refused as refused:
            entry.update(status=refused.status, reason=refused.message)
            self.state.record(entry)
            reply = {"content-type": "application/json"}
            if rule is not None and rule.retry_after is not None:
                reply["retry-after"] = rule.retry_after
            answer = orjson.dumps({"code": refused.status, "errno": 0, "error": refused.message})
            return refused.status, reply, answer, delay
        self._messages += 1
        entry.update(status=201, reason="")
        self.state.record(entry)
        return 201, {"location": f"{origin}/message/{self._messages}"}, b"", delay

    def _accept(
        self, sub: Subscription | None, origin: str, headers: Mapping[str, str], body: bytes
    ) -> dict[str, Any]:
        if sub is None:
            raise Refused(404, "subscription not found")
        if sub.expired:
            raise Refused(410, "subscription expired")
        ttl = headers.get("ttl", "")
        if not ttl.isdigit():
            raise Refused(400, "missing or invalid TTL header")
        urgency = headers.get("urgency")
        if urgency is not None and urgency not in URGENCIES:
            raise Refused(400, "invalid Urgency header")
        topic = headers.get("topic")
        if topic is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", topic):
            raise Refused(400, "invalid Topic header")
        claims, key = self._vapid(headers.get("authorization", ""), origin)
        if sub.application_server_key and key != sub.application_server_key:
            raise Refused(403, "VAPID key does not match the subscription's applicationServerKey")
        if len(body) > MAX_BODY:
            raise Refused(413, f"payload of {len(body)} bytes exceeds {MAX_BODY}")
        if headers.get("content-encoding") != "aes128gcm":
            raise Refused(400, "Content-Encoding must be aes128gcm")
        try:
            plaintext = ece.decrypt(body, sub.private_key, sub.auth)
        except ece.DecryptError as exc:
            raise Refused(400, f"decryption failed: {exc}") from exc
        out: dict[str, Any] = {
            "plaintext": plaintext.decode(errors="replace"),
            "vapid": claims,
            "ttl": int(ttl),
        }
        with contextlib.suppress(orjson.JSONDecodeError):
            out["payload"] = orjson.loads(plaintext)
        return out

    def _vapid(self, authorization: str, origin: str) -> tuple[dict[str, Any], str]:
        match = re.fullmatch(r"vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)", authorization.strip())
        if match is None:
            raise Refused(401, "Authorization must be 'vapid t=<jwt>, k=<key>'")
        token, key = match.groups()
        claims = self._vapid_ok.get(authorization)
        if claims is None:
            try:
                public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), ece.b64url_decode(key))
                claims = jwt.decode(
                    token, public, algorithms=["ES256"], options={"verify_exp": False, "verify_aud": False}
                )
            except (jwt.PyJWTError, ValueError) as exc:
                raise Refused(401, f"VAPID token rejected: {exc}") from exc
            if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
                raise Refused(401, "VAPID sub must be a mailto: or https: URL")
            if len(self._vapid_ok) > 1000:
                self._vapid_ok.clear()
            self._vapid_ok[authorization] = claims
        if claims.get("aud") != origin:
            raise Refused(401, f"VAPID aud must be this push service's origin {origin}")
        exp, now = claims.get("exp"), self.state.clock()
        if not isinstance(exp, int | float) or exp <= now or exp > now + 24 * 3600 + 60:
            raise Refused(401, "VAPID exp must be in the next 24 hours")
        return claims, key
