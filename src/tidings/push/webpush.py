"""Web Push: RFC 8030 delivery, RFC 8291 `aes128gcm` encryption (ece.py), RFC 8292 VAPID (vapid.py).

`TTL` is always sent (a day unless the spec says otherwise: pywebpush's default of 0 silently drops pushes
for any browser that is not online at that moment). Endpoints come from browsers, so each is checked against
the allowed hosts before we POST anything to it. Push services speak HTTP/2 (FCM, Mozilla, Apple): we send
over the push transport (transport/), which falls back to HTTP/1.1 for an origin that does not.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import ece, payloads
from .base import (
    NOT_CONFIGURED,
    Notification,
    Outcome,
    Provider,
    Result,
    Target,
    parse_retry_after,
    transport_failure,
)
from .endpoints import EndpointPolicy
from .transport import DEFAULT_TIMEOUT, Transport, TransportError
from .vapid import VapidKey, VapidSigner


@dataclass(frozen=True, slots=True)
class WebPushPrepared:
    plaintext: bytes
    headers: dict[str, str]
    wire: list[tuple[bytes, bytes]]  # the same headers (and content-length) as the transport takes them


CREATED = Result(Outcome.delivered, status=201)
MEMO_SIZE = 10_000  # endpoints and keys remembered between events (cleared when full)


class WebPushProvider(Provider):
    name = "webpush"

    def __init__(
        self,
        *,
        vapid_key: VapidKey | None,
        subject: str,
        clock: Callable[[], float],
        allowed_hosts: Iterable[str] = (),
        http_hosts: Iterable[str] = (),
        timeout: float = DEFAULT_TIMEOUT,
        transport: Transport | None = None,
    ) -> None:
        """`transport` replaces the one built from `timeout` (tests inject their own)."""
        self.clock = clock
        self.endpoints = EndpointPolicy.from_lists(http_hosts, allowed_hosts)  # the registry's policy too
        self.signer: VapidSigner | None = None
        missing = []
        if vapid_key is None:
            missing.append("TIDINGS_VAPID_PRIVATE_KEY_PATH (create one with `tidings vapid generate`)")
        if not subject:
            missing.append("TIDINGS_VAPID_SUBJECT (mailto: or https: URL)")
        if vapid_key is not None and subject:
            try:
                self.signer = VapidSigner(vapid_key, subject, clock=clock)
            except ValueError as exc:
                missing.append(f"TIDINGS_VAPID_SUBJECT: {exc}")
        self.missing = ", ".join(missing)
        self.timeout = timeout
        self.transport = transport or Transport(timeout=timeout, service="the push service")
        self._routes: dict[str, tuple[str, bytes] | str] = {}
        self._decoded: dict[tuple[str, str], tuple[bytes, bytes]] = {}
        self._auth_headers: dict[str, tuple[str, tuple[bytes, bytes]]] = {}

    @property
    def configured(self) -> bool:
        return not self.missing

    def prepare(self, note: Notification) -> WebPushPrepared:
        headers = {
            "ttl": str(payloads.webpush_ttl(note)),
            "urgency": payloads.webpush_urgency(note),
            "content-encoding": "aes128gcm",
            "content-type": "application/octet-stream",
        }
        topic = payloads.webpush_topic(note)
        if topic:
            headers["topic"] = topic
        plaintext = payloads.webpush_plaintext(note)
        # Every recipient's body has the same length: header (86) + plaintext + delimiter (1) + tag (16).
        length = str(ece.HEADER_SIZE + len(plaintext) + 1 + ece.TAG_SIZE)
        wire = [
            (name.encode(), value.encode()) for name, value in [*headers.items(), ("content-length", length)]
        ]
        return WebPushPrepared(plaintext, headers, wire)

    def endpoint_problem(self, endpoint: str) -> str:
        """Why we will not POST to this endpoint, or "" when it is fine."""
        return self.endpoints.problem(endpoint)

    async def send(self, target: Target, prepared: WebPushPrepared) -> Result:
        if not self.configured or self.signer is None:
            return NOT_CONFIGURED
        route = self._route(target.token)
        if isinstance(route, str):
            return Result(Outcome.rejected, route)
        origin, path = route
        try:
            ua_public, auth = self._keys(target.p256dh or "", target.auth or "")
            body = ece.encrypt(prepared.plaintext, ua_public, auth)
        except (ValueError, binascii.Error) as exc:
            # Keys that are not a P-256 point and a 16-byte secret will never work: retire the subscription.
            return Result(Outcome.dead_token, f"bad_subscription_keys: {exc}"[:300])
        authorization = self.signer.for_origin(origin)
        cached = self._auth_headers.get(origin)
        if cached is None or cached[0] != authorization:
            cached = self._auth_headers[origin] = (authorization, (b"authorization", authorization.encode()))
        try:
            answer = await self.transport.request(origin, path, [*prepared.wire, cached[1]], body)
        except TransportError as exc:
            return transport_failure(exc)
        if answer.status == 201:  # the usual answer: skip decoding anything
            return CREATED
        text = answer.body[:200].decode(errors="replace")
        return self._classify(answer.status, text, answer.header(b"retry-after"))

    def _route(self, endpoint: str) -> tuple[str, bytes] | str:
        """(origin, path) of an endpoint, or why we refuse it; memoised: a device is sent to again and again."""
        route = self._routes.get(endpoint)
        if route is None:
            problem = self.endpoint_problem(endpoint)
            parts = urlsplit(endpoint)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            route = problem or (f"{parts.scheme}://{parts.netloc}", path.encode())
            if len(self._routes) >= MEMO_SIZE:
                self._routes.clear()
            self._routes[endpoint] = route
        return route

    def _keys(self, p256dh: str, auth: str) -> tuple[bytes, bytes]:
        keys = self._decoded.get((p256dh, auth))
        if keys is None:
            keys = (ece.b64url_decode(p256dh), ece.b64url_decode(auth))
            if len(self._decoded) >= MEMO_SIZE:
                self._decoded.clear()
            self._decoded[(p256dh, auth)] = keys
        return keys

    def _classify(self, status: int, text: str, retry_after_header: bytes | None) -> Result:
        if 200 <= status < 300:
            return Result(Outcome.delivered, status=status)
        reason = f"HTTP {status}: {text[:200]}".strip().rstrip(":")
        if status in (404, 410):
            return Result(Outcome.dead_token, reason, status)
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(retry_after_header, self.clock())
            return Result(Outcome.retry_later, reason, status, retry_after)
        if status in (401, 403):
            return Result(Outcome.credentials, reason, status)  # VAPID refused: our key or subject
        return Result(Outcome.rejected, reason, status)  # 400, 413 payload too large...

    async def aclose(self) -> None:
        await self.transport.aclose()
