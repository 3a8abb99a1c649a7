"""A local push service for Web Push: mints subscriptions, checks VAPID, decrypts what it receives.

    POST /_sandbox/subscriptions            {"application_server_key"?: <base64url>} ->
                                            {"endpoint", "keys": {"p256dh", "auth"}}   (what a browser gives)
    DELETE /_sandbox/subscriptions/{id}     the subscription expires: its endpoint answers 410 from then on
    POST /push/{id}                         RFC 8030 delivery: 201 Created, or the push service's errors

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
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..push import ece
from ._server import UvicornServer
from .control import SandboxState, control_routes

MAX_BODY = 4096
URGENCIES = frozenset({"very-low", "low", "normal", "high"})


@dataclass(slots=True)
class Subscription:
    id: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    application_server_key: str | None
    expired: bool = False


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class WebPushSandbox:
    def __init__(
        self, *, clock: Callable[[], float] = time.time, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.state = SandboxState(clock)
        self.subscriptions: dict[str, Subscription] = {}
        self._messages = 0
        self._vapid_ok: dict[str, dict[str, Any]] = {}  # verified header -> claims (push services cache too)
        routes = [
            Route("/_sandbox/subscriptions", self._subscribe, methods=["POST"]),
            Route("/_sandbox/subscriptions/{sid}", self._expire, methods=["DELETE"]),
            Route("/push/{sid}", self._push, methods=["POST"]),
            *control_routes(self.state),
        ]
        self._server = UvicornServer(Starlette(routes=routes), host=host, port=port)

    @property
    def url(self) -> str:
        return self._server.url

    control_url = url

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        self.state.stopping.set()
        await self._server.stop()

    async def __aenter__(self) -> WebPushSandbox:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def subscribe(self, application_server_key: str | None = None) -> dict[str, Any]:
        """A new subscription as `PushSubscription.toJSON()` gives it."""
        sid = secrets.token_urlsafe(12)
        key = ec.generate_private_key(ec.SECP256R1())
        sub = Subscription(sid, key, secrets.token_bytes(16), application_server_key)
        self.subscriptions[sid] = sub
        return {
            "endpoint": f"{self.url}/push/{sid}",
            "keys": {
                "p256dh": ece.b64url_encode(ece.public_bytes(key.public_key())),
                "auth": ece.b64url_encode(sub.auth),
            },
        }

    async def _subscribe(self, request: Request) -> Response:
        raw = await request.body()
        options = orjson.loads(raw) if raw.strip() else {}
        return JSONResponse(self.subscribe(options.get("application_server_key")), status_code=201)

    async def _expire(self, request: Request) -> Response:
        sub = self.subscriptions.get(request.path_params["sid"])
        if sub is None:
            return JSONResponse({"error": "unknown subscription"}, status_code=404)
        sub.expired = True
        return Response(status_code=204)

    async def _push(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        endpoint = f"{self.url}/push/{sid}"
        body = await request.body()
        entry: dict[str, Any] = {"token": endpoint, "subscription": sid, "headers": dict(request.headers)}
        entry["headers"].pop("authorization", None)
        rule = self.state.match(endpoint) or self.state.match(sid)
        try:
            if rule is not None:
                await self.state.pause(rule.delay)
                if rule.status >= 300:
                    raise Refused(rule.status, rule.reason or "sandbox rule")
            entry.update(self._accept(sid, request, body))
        except Refused as refused:
            entry.update(status=refused.status, reason=refused.message)
            self.state.record(entry)
            headers = {"retry-after": rule.retry_after} if rule and rule.retry_after is not None else None
            return JSONResponse(
                {"code": refused.status, "errno": 0, "error": refused.message}, refused.status, headers
            )
        self._messages += 1
        entry.update(status=201, reason="")
        self.state.record(entry)
        return Response(status_code=201, headers={"location": f"{self.url}/message/{self._messages}"})

    def _accept(self, sid: str, request: Request, body: bytes) -> dict[str, Any]:
        sub = self.subscriptions.get(sid)
        if sub is None:
            raise Refused(404, "subscription not found")
        if sub.expired:
            raise Refused(410, "subscription expired")
        ttl = request.headers.get("ttl", "")
        if not ttl.isdigit():
            raise Refused(400, "missing or invalid TTL header")
        urgency = request.headers.get("urgency")
        if urgency is not None and urgency not in URGENCIES:
            raise Refused(400, "invalid Urgency header")
        topic = request.headers.get("topic")
        if topic is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", topic):
            raise Refused(400, "invalid Topic header")
        claims, key = self._vapid(request.headers.get("authorization", ""))
        if sub.application_server_key and key != sub.application_server_key:
            raise Refused(403, "VAPID key does not match the subscription's applicationServerKey")
        if len(body) > MAX_BODY:
            raise Refused(413, f"payload of {len(body)} bytes exceeds {MAX_BODY}")
        if request.headers.get("content-encoding") != "aes128gcm":
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

    def _vapid(self, authorization: str) -> tuple[dict[str, Any], str]:
        match = re.fullmatch(r"vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)", authorization.strip())
        if match is None:
            raise Refused(401, "Authorization must be 'vapid t=<jwt>, k=<key>'")
        token, key = match.groups()
        claims = self._vapid_ok.get(authorization)
        if claims is None:
            try:
                public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), ece.b64url_decode(key))
                claims = jwt.decode(
                    token, public, algorithms=["ES256"], audience=self.url, options={"verify_exp": False}
                )
            except (jwt.PyJWTError, ValueError) as exc:
                raise Refused(401, f"VAPID token rejected: {exc}") from exc
            if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
                raise Refused(401, "VAPID sub must be a mailto: or https: URL")
            if len(self._vapid_ok) > 1000:
                self._vapid_ok.clear()
            self._vapid_ok[authorization] = claims
        exp, now = claims.get("exp"), self.state.clock()
        if not isinstance(exp, int | float) or exp <= now or exp > now + 24 * 3600 + 60:
            raise Refused(401, "VAPID exp must be in the next 24 hours")
        return claims, key
