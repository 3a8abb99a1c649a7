"""APNs over HTTP/2 with token (.p8) authentication.

One ES256 provider JWT is shared by every send and refreshed after `refresh_after` seconds (40 min: Apple
rejects tokens older than an hour and answers 429 TooManyProviderTokenUpdates to refreshes more often than
every 20 min). ExpiredProviderToken makes `send` mint a new token once (only if nobody else already did) and
resend. Requests go over the push transport (transport/, HTTP/2 only: Apple speaks nothing else), which
resends by itself what Apple certainly did not process (REFUSED_STREAM, above a GOAWAY) and ends every
request within `timeout`; anything else without an answer comes back as retry_later.
"""

from __future__ import annotations

import hashlib
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from . import payloads
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
from .transport import DEFAULT_TIMEOUT, Run, Transport, TransportError, repeated, volatile

PRODUCTION_URL = "https://api.push.apple.com"
SANDBOX_URL = "https://api.sandbox.push.apple.com"
APNS_ID_NAMESPACE = uuid.UUID("6f0d3c1e-5b8a-4e0a-9a55-7d1c2b9e4f10")  # apns-id = uuid5(ns, event/device)
_NAMESPACE_BYTES = APNS_ID_NAMESPACE.bytes

DEAD_TOKEN_REASONS = frozenset(
    {"Unregistered", "ExpiredToken", "BadDeviceToken", "DeviceTokenNotForTopic", "TopicDisallowed"}
)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class ApnsPrepared:
    event_id: str
    payload: bytes
    headers: dict[str, str]
    wire: list[tuple[bytes, bytes]]  # the same headers as the transport takes them, built once per event


def apns_id(event_id: str, device_id: str) -> str:
    """Deterministic per (event, device), so a redelivered job is recognisable in Apple's and our logs.

    uuid5(APNS_ID_NAMESPACE, "event/device"), computed without uuid.UUID's integer round trips (a third of the
    cost, once per push)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{event_id}/{device_id}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def load_signing_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("an APNs .p8 key must be an EC (P-256) private key")
    return key


class ApnsProvider(Provider):
    name = "apns"

    def __init__(
        self,
        *,
        key_pem: bytes | None,
        key_id: str,
        team_id: str,
        topic: str,
        base_url: str = "",
        clock: Callable[[], float],
        timeout: float = DEFAULT_TIMEOUT,
        refresh_after: float = 40 * 60,
        transport: Transport | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`transport` replaces the one built from `timeout` and `ssl_context` (tests inject their own)."""
        if not 20 * 60 <= refresh_after <= 50 * 60:
            raise ValueError(
                "refresh_after must be 20-50 minutes: Apple refuses older tokens and faster rotation"
            )
        self.key_id, self.team_id, self.topic = key_id, team_id, topic
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.refresh_after = refresh_after
        self.token_mints = 0  # provider JWTs minted so far (tests and metrics read it)
        self._key: ec.EllipticCurvePrivateKey | None = None
        self._token = ""
        self._token_at = 0.0
        missing = [
            name
            for name, value in (("TIDINGS_APNS_KEY_ID", key_id), ("TIDINGS_APNS_TEAM_ID", team_id))
            if not value
        ]
        if key_pem is None:
            missing.insert(0, "TIDINGS_APNS_KEY_PATH or TIDINGS_APNS_KEY")
        else:
            try:
                self._key = load_signing_key(key_pem)
            except ValueError as exc:
                missing.insert(0, f"a valid .p8 key ({exc})")
        self.missing = ", ".join(missing)
        self.transport = transport or Transport(
            timeout=timeout, http1=False, ssl_context=ssl_context, service="APNs"
        )
        self._run: tuple[ApnsPrepared | None, str, str, Run] = (None, "", "", repeated([]))

    @property
    def configured(self) -> bool:
        return not self.missing

    def _bearer(self, *, stale: str = "") -> str:
        """The shared provider token; `stale` is a token Apple called expired, replaced once."""
        now = self.clock()
        if not self._token or now - self._token_at >= self.refresh_after or (stale and stale == self._token):
            assert self._key is not None
            token = jwt.encode(
                {"iss": self.team_id, "iat": int(now)}, self._key, "ES256", headers={"kid": self.key_id}
            )
            self._token, self._token_at = f"bearer {token}", now
            self.token_mints += 1
        return self._token

    def prepare(self, note: Notification) -> ApnsPrepared:
        headers = {
            "apns-push-type": payloads.apns_push_type(note),
            "apns-priority": payloads.apns_priority(note),
        }
        if note.spec.ttl is not None:
            # 0 means "deliver now or never"; otherwise an absolute UNIX time.
            headers["apns-expiration"] = "0" if note.spec.ttl == 0 else str(int(self.clock()) + note.spec.ttl)
        collapse = payloads.apns_collapse_id(note)
        if collapse:
            headers["apns-collapse-id"] = collapse
        wire = [(name.encode(), value.encode()) for name, value in headers.items()]
        return ApnsPrepared(note.event_id, payloads.apns_payload(note), headers, wire)

    def _base(self, target: Target) -> str:
        return self.base_url or (SANDBOX_URL if target.environment == "sandbox" else PRODUCTION_URL)

    async def send(self, target: Target, prepared: ApnsPrepared) -> Result:
        if not self.configured:
            return NOT_CONFIGURED
        if not target.token.isascii() or not target.token.isalnum():
            # It goes into the request path: never send what could change the path. Apple's answer for any
            # malformed token is the same.
            return Result(Outcome.dead_token, "BadDeviceToken")
        topic = target.topic or self.topic
        ident = apns_id(prepared.event_id, target.device_id)
        bearer = self._bearer()
        base, path = self._base(target), b"/3/device/" + target.token.encode()
        try:
            response = await self.transport.request(
                base, path, self._headers(prepared, topic, ident, bearer), prepared.payload
            )
            if response.status != 200 and _reason(response.body) == "ExpiredProviderToken":
                bearer = self._bearer(
                    stale=bearer
                )  # a new token (unless someone minted one), the request again
                response = await self.transport.request(
                    base, path, self._headers(prepared, topic, ident, bearer), prepared.payload
                )
        except TransportError as exc:
            return transport_failure(exc)
        status = response.status
        return self._classify(
            status, response.body, None if status == 200 else response.header(b"retry-after")
        )

    def _headers(self, prepared: ApnsPrepared, topic: str, ident: str, bearer: str) -> list[Any]:
        run = self._run
        if run[0] is not prepared or run[1] != topic or run[2] is not bearer:
            # The headers all sends of this event share, as one object (encoded once); the last one kept, as
            # the sends of one event mostly follow each other.
            headers = [*prepared.wire, (b"apns-topic", topic.encode()), (b"authorization", bearer.encode())]
            run = self._run = (prepared, topic, bearer, repeated(headers))
        return [run[3], volatile(b"apns-id", ident.encode())]

    def _classify(self, status: int, body: bytes, retry_after: bytes | None) -> Result:
        if status == 200:
            return Result(Outcome.delivered, status=200)
        reason = _reason(body) or f"HTTP {status}"
        if status == 410 or reason in DEAD_TOKEN_REASONS:
            return Result(Outcome.dead_token, reason, status)
        if status == 403:
            return Result(Outcome.credentials, reason, status)
        if status in RETRY_STATUSES or status >= 500:
            return Result(Outcome.retry_later, reason, status, parse_retry_after(retry_after, self.clock()))
        return Result(Outcome.rejected, reason, status)  # 400 BadTopic, 413 PayloadTooLarge, 404, 405...

    @property
    def connections_opened(self) -> int:
        return self.transport.connections_opened

    async def aclose(self) -> None:
        await self.transport.aclose()


def _reason(body: bytes) -> str:
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return ""
    return str(parsed.get("reason", "")) if isinstance(parsed, dict) else ""
