"""Builders shared by the registry tests: valid registrations for each provider and a controllable clock."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tidings.registry.validation import DeviceIn

T0 = 1_800_000_000.0  # a fixed epoch second; tests move time from here


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def p256dh() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return b64url(key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))


def apns_body(token: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "provider": "apns",
        "platform": "ios",
        "token": secrets.token_hex(32) if token is None else token,
        **extra,
    }


def fcm_body(token: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "provider": "fcm",
        "platform": "android",
        "token": "fcm:" + secrets.token_urlsafe(100) if token is None else token,
        **extra,
    }


def webpush_body(endpoint: str | None = None, **extra: Any) -> dict[str, Any]:
    endpoint = endpoint or f"https://fcm.googleapis.com/fcm/send/{secrets.token_urlsafe(32)}"
    keys = {"p256dh": p256dh(), "auth": b64url(secrets.token_bytes(16))}
    return {
        "provider": "webpush",
        "platform": "web",
        "subscription": {"endpoint": endpoint, "keys": keys},
        **extra,
    }


def device_in(body: dict[str, Any]) -> DeviceIn:
    return DeviceIn.model_validate(body)
