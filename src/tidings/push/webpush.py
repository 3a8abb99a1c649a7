"""Web Push: RFC 8030 delivery, RFC 8291 `aes128gcm` encryption (ece.py), RFC 8292 VAPID (vapid.py).

`TTL` is always sent (a day unless the spec says otherwise: pywebpush's default of 0 silently drops pushes
for any browser that is not online at that moment). Endpoints come from browsers, so each is checked against
the allowed hosts before we POST anything to it. Push services speak HTTP/2 (FCM, Mozilla, Apple): we send
over our own HTTP/2 client and fall back to HTTP/1.1 (httpx) for an origin that does not.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from . import ece, payloads
from ._http import DEFAULT_TIMEOUT, make_client, parse_retry_after
from .base import NOT_CONFIGURED, Notification, Outcome, Provider, Result, Target
from .endpoints import EndpointPolicy
from .h2client import encode_headers, literal
from .transport import Http2First
from .vapid import VapidKey, VapidSigner


@dataclass(frozen=True, slots=True)
class WebPushPrepared:
    plaintext: bytes
    headers: dict[str, str]
    block: bytes  # the same headers HPACK-encoded once, for the HTTP/2 client


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
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
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
        # HTTP/2 on our own client first (h2client.py says why); HTTP/1.1 through httpx for origins without h2,
        # and for every origin when an httpx client or transport is injected.
        self._http = Http2First(
            client or make_client(http2_only=False, timeout=timeout, transport=transport),
            use_h2=client is None and transport is None,
            timeout=timeout,
            service="the push service",
        )
        self._routes: dict[str, tuple[str, bytes] | str] = {}
        self._decoded: dict[tuple[str, str], tuple[bytes, bytes]] = {}
        self._auth_literals: dict[str, tuple[str, bytes]] = {}

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
        return WebPushPrepared(
            plaintext, headers, encode_headers([*headers.items(), ("content-length", length)])
        )

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
        cached = self._auth_literals.get(origin)
        if cached is None or cached[0] != authorization:
            cached = self._auth_literals[origin] = (
                authorization,
                literal(b"authorization", authorization.encode()),
            )
        headers = {**prepared.headers, "authorization": authorization}  # only for HTTP/1.1 (httpx)
        answer = await self._http.post(origin, path, prepared.block + cached[1], headers, body)
        if isinstance(answer, Result):
            return answer
        if answer.status == 201:  # the usual answer: skip decoding anything
            return CREATED
        return self._classify(answer.status, answer.body[:200].decode(errors="replace"), answer.retry_after)

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

    def _classify(self, status: int, text: str, retry_after_header: str | None) -> Result:
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
        await self._http.aclose()
