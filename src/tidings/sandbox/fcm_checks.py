"""The shape of an FCM v1 send request, checked as FCM does (fields, types, the 4096-byte payload)."""

from __future__ import annotations

import re
from typing import Any

import orjson

MAX_PAYLOAD = 4096
MESSAGE_FIELDS = frozenset(
    {
        "name",
        "data",
        "notification",
        "android",
        "webpush",
        "apns",
        "fcm_options",
        "token",
        "topic",
        "condition",
    }
)
NOTIFICATION_FIELDS = frozenset({"title", "body", "image"})
ANDROID_FIELDS = frozenset(
    {
        "collapse_key",
        "priority",
        "ttl",
        "restricted_package_name",
        "data",
        "notification",
        "fcm_options",
        "direct_boot_ok",
    }
)
DURATION = re.compile(r"\d{1,12}(\.\d{1,9})?s")
RESERVED = ("from", "notification", "message_type")


class MessageError(ValueError):
    """An INVALID_ARGUMENT answer, with FCM's kind of message."""


def _string_map(value: Any, where: str) -> None:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise MessageError(f"Invalid value at '{where}': values must be strings")


def check_message(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MessageError(f"Invalid JSON payload received. {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("message"), dict):
        raise MessageError("Invalid JSON payload received. Missing 'message'.")
    if set(body) - {"message", "validate_only"}:
        raise MessageError(f"Invalid JSON payload received. Unknown name {sorted(set(body) - {'message'})}")
    message: dict[str, Any] = body["message"]
    unknown = set(message) - MESSAGE_FIELDS
    if unknown:
        raise MessageError(f"Invalid JSON payload received. Unknown name {sorted(unknown)} at 'message'")
    if sum(1 for key in ("token", "topic", "condition") if message.get(key)) != 1:
        raise MessageError("Exactly one of token, topic or condition must be set")
    data = message.get("data", {})
    _string_map(data, "message.data")
    bad = [key for key in data if key in RESERVED or key.lower().startswith(("google", "gcm"))]
    if bad:
        raise MessageError(f"Invalid data payload key: {bad[0]}")
    notification = message.get("notification")
    if notification is not None:
        _string_map(notification, "message.notification")
        if set(notification) - NOTIFICATION_FIELDS:
            raise MessageError("Invalid JSON payload received. Unknown name at 'message.notification'")
    _check_android(message.get("android"))
    _check_apns(message.get("apns"))
    webpush = message.get("webpush")
    if webpush is not None:
        _string_map(
            webpush.get("headers", {}) if isinstance(webpush, dict) else None, "message.webpush.headers"
        )
    counted = orjson.dumps({"data": data, **({"notification": notification} if notification else {})})
    if len(counted) > MAX_PAYLOAD:
        raise MessageError(f"Message is too big: {len(counted)} bytes, the limit is {MAX_PAYLOAD}")
    return message


def _check_android(android: Any) -> None:
    if android is None:
        return
    if not isinstance(android, dict) or set(android) - ANDROID_FIELDS:
        raise MessageError("Invalid JSON payload received. Unknown name at 'message.android'")
    if android.get("priority", "NORMAL") not in ("NORMAL", "HIGH"):
        raise MessageError("Invalid value at 'message.android.priority'")
    ttl = android.get("ttl")
    if ttl is not None and not (isinstance(ttl, str) and DURATION.fullmatch(ttl)):
        raise MessageError("Invalid value at 'message.android.ttl' (a duration such as \"3.5s\")")


def _check_apns(apns: Any) -> None:
    if apns is None:
        return
    if not isinstance(apns, dict) or set(apns) - {"headers", "payload", "fcm_options", "live_activity_token"}:
        raise MessageError("Invalid JSON payload received. Unknown name at 'message.apns'")
    _string_map(apns.get("headers", {}), "message.apns.headers")
    payload = apns.get("payload", {})
    if not isinstance(payload, dict) or not isinstance(payload.get("aps", {}), dict):
        raise MessageError("Invalid value at 'message.apns.payload'")
