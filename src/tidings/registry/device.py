"""The device value objects and token helpers shared by the store, the API, the CLI and the push worker."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

__all__ = ["MAX_USER_ID", "Device", "PruneReport", "normalise_token", "token_hash", "valid_user_id"]

MAX_USER_ID = 256  # devices.user_id is varchar(256)


def valid_user_id(user_id: str) -> bool:
    """Whether `user_id` can own devices: non-empty, fits the column, no NUL (PostgreSQL refuses it in text)."""
    return 0 < len(user_id) <= MAX_USER_ID and "\x00" not in user_id


@dataclass(frozen=True, slots=True)
class Device:
    """One registered push target. Timestamps are timezone-aware UTC datetimes."""

    id: str
    user_id: str
    provider: str
    platform: str
    token: str
    p256dh: str | None
    auth: str | None
    environment: str | None
    app_id: str | None
    name: str | None
    locale: str | None
    timezone: str | None
    created_at: datetime
    updated_at: datetime
    last_seen_at: datetime
    last_used_at: datetime | None
    disabled_at: datetime | None
    disabled_reason: str | None

    @property
    def active(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True, slots=True)
class PruneReport:
    stale: int  # not registered again within the TTL
    disabled: int  # disabled longer ago than the TTL

    @property
    def total(self) -> int:
        return self.stale + self.disabled


def normalise_token(provider: str, token: str) -> str:
    """The stored spelling of a token (APNs hex is case-insensitive)."""
    return token.lower() if provider == "apns" else token


def token_hash(provider: str, token: str) -> str:
    return hashlib.sha256(normalise_token(provider, token).encode("utf-8")).hexdigest()
