"""Web Push subscription keys: decode, check and normalise `p256dh` and `auth` (RFC 8291).

Stored as unpadded base64url whatever the client sent, so the Web Push provider reads one spelling.
"""

from __future__ import annotations

import base64
import binascii
import re

from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["b64url", "normalise_auth", "normalise_p256dh"]

_B64URL_RE = re.compile(r"[A-Za-z0-9_\-]+={0,2}")


def _b64url_decode(value: str, what: str) -> bytes:
    if not _B64URL_RE.fullmatch(value):
        raise ValueError(f"{what} must be base64url")
    stripped = value.rstrip("=")
    try:
        return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} must be base64url") from None


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def normalise_p256dh(value: str) -> str:
    raw = _b64url_decode(value, "p256dh")
    if len(raw) != 65 or raw[0] != 0x04:
        raise ValueError("p256dh must be a 65-byte uncompressed P-256 point")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        raise ValueError("p256dh is not a point on the P-256 curve") from None
    return b64url(raw)


def normalise_auth(value: str) -> str:
    raw = _b64url_decode(value, "auth")
    if len(raw) != 16:
        raise ValueError("auth must be 16 bytes")
    return b64url(raw)
