"""The APNs request rules the sandbox enforces, as Apple documents them, in one pure function.

Reasons and statuses are Apple's ("Handling notification responses from APNs"). Two are the sandbox's own
words where Apple gives none: `BadPayload` (not a JSON object with an `aps` dictionary) and `InvalidPushType`
also for a payload that contradicts its push type (background with anything but content-available).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import ec

MAX_PAYLOAD = 4096
TOKEN_MAX_AGE = 3600  # Apple rejects provider tokens issued more than an hour ago
MIN_TOKEN_ROTATION = 20 * 60  # ...and answers 429 TooManyProviderTokenUpdates to faster rotation
PUSH_TYPES = frozenset(
    {
        "alert",
        "background",
        "location",
        "voip",
        "complication",
        "fileprovider",
        "mdm",
        "liveactivity",
        "pushtotalk",
        "controls",
        "widgets",
    }
)
DEVICE_TOKEN = re.compile(r"[0-9a-fA-F]{64,200}")
TOPIC = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-_]*")


class Refusal(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass(slots=True)
class ApnsAuth:
    """The team's key as Apple knows it: verifies provider tokens, caching good signatures."""

    key_id: str
    team_id: str
    public_key: ec.EllipticCurvePublicKey
    clock: Callable[[], float]
    _verified: dict[str, float] = field(default_factory=dict)
    # connection -> (its current token, when that token was first seen, whether we called it expired)
    _in_use: dict[int, tuple[str, float, bool]] = field(default_factory=dict)

    def check(self, authorization: str | None, connection: int = 0) -> dict[str, Any]:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Refusal(403, "MissingProviderToken")
        token = authorization[7:].strip()
        iat = self._verified.get(token)
        if iat is None:
            iat = self._verify(token)
            if len(self._verified) > 1000:
                self._verified.clear()
            self._verified[token] = iat
        if self.clock() - iat > TOKEN_MAX_AGE:
            self.expired(connection)
            raise Refusal(403, "ExpiredProviderToken")
        self._rotation(token, connection)
        return {"kid": self.key_id, "iss": self.team_id, "iat": iat}

    def _rotation(self, token: str, connection: int) -> None:
        """Apple's rule: a new token at most every 20 minutes, unless it has just called the old one expired."""
        now = self.clock()
        current = self._in_use.get(connection)
        if current is not None and current[0] != token:
            if not current[2] and now - current[1] < MIN_TOKEN_ROTATION:
                raise Refusal(429, "TooManyProviderTokenUpdates")
            current = None
        if current is None:
            self._in_use[connection] = (token, now, False)

    def expired(self, connection: int) -> None:
        """Remember that this connection was told its token expired: replacing it at once is then expected."""
        current = self._in_use.get(connection)
        if current is not None:
            self._in_use[connection] = (current[0], current[1], True)

    def _verify(self, token: str) -> float:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Refusal(403, "InvalidProviderToken") from exc
        if header.get("alg") != "ES256":
            raise Refusal(403, "InvalidProviderToken")
        if header.get("kid") != self.key_id:
            raise Refusal(403, "InvalidProviderToken")
        try:
            # Age is checked against our clock below, not PyJWT's, so tests can move time.
            claims = jwt.decode(token, self.public_key, algorithms=["ES256"], options={"verify_iat": False})
        except jwt.PyJWTError as exc:
            raise Refusal(403, "InvalidProviderToken") from exc
        if claims.get("iss") != self.team_id or not isinstance(claims.get("iat"), int | float):
            raise Refusal(403, "InvalidProviderToken")
        return float(claims["iat"])


def check_request(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    auth: ApnsAuth,
    topics: frozenset[str] | None,
    connection: int = 0,
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Validate one request; return (device token, payload, jwt claims) or raise Refusal."""
    if not path.startswith("/3/device/"):
        raise Refusal(404, "BadPath")
    if method != "POST":
        raise Refusal(405, "MethodNotAllowed")
    token = path[len("/3/device/") :]
    if not token:
        raise Refusal(400, "MissingDeviceToken")
    claims = auth.check(headers.get("authorization"), connection)
    if not DEVICE_TOKEN.fullmatch(token):
        raise Refusal(400, "BadDeviceToken")
    _check_headers(headers, topics)
    payload = _check_payload(body)
    _check_push_type(headers, payload)
    return token, payload, claims


def _check_headers(headers: Mapping[str, str], topics: frozenset[str] | None) -> None:
    topic = headers.get("apns-topic")
    if not topic:
        raise Refusal(400, "MissingTopic")
    if not TOPIC.fullmatch(topic):
        raise Refusal(400, "BadTopic")
    if topics is not None and topic not in topics:
        raise Refusal(400, "TopicDisallowed")
    apns_id = headers.get("apns-id")
    if apns_id is not None:
        try:
            if str(uuid.UUID(apns_id)) != apns_id.lower():
                raise ValueError(apns_id)
        except ValueError as exc:
            raise Refusal(400, "BadMessageId") from exc
    expiration = headers.get("apns-expiration")
    if expiration is not None and not expiration.isdigit():
        raise Refusal(400, "BadExpirationDate")
    if len(headers.get("apns-collapse-id", "").encode()) > 64:
        raise Refusal(400, "BadCollapseId")
    if headers.get("apns-priority", "10") not in ("1", "5", "10"):
        raise Refusal(400, "BadPriority")
    if headers.get("apns-push-type") not in PUSH_TYPES:
        raise Refusal(400, "InvalidPushType")


def _check_payload(body: bytes) -> dict[str, Any]:
    if not body:
        raise Refusal(400, "PayloadEmpty")
    if len(body) > MAX_PAYLOAD:
        raise Refusal(413, "PayloadTooLarge")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refusal(400, "BadPayload") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
        raise Refusal(400, "BadPayload")
    return payload


def _check_push_type(headers: Mapping[str, str], payload: dict[str, Any]) -> None:
    aps = payload["aps"]
    if headers["apns-push-type"] == "background":
        # A background push is content-available only, at priority 5 (10 is an error at Apple).
        if headers.get("apns-priority", "10") != "5":
            raise Refusal(400, "BadPriority")
        if aps != {"content-available": 1}:
            raise Refusal(400, "InvalidPushType")
    elif headers["apns-push-type"] == "alert" and not ({"alert", "badge", "sound"} & aps.keys()):
        raise Refusal(400, "InvalidPushType")
