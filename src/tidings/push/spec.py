"""The push spec an event may carry, and the publish-time check that its payload fits every provider.

Payloads are built here by the same functions the providers use (`payloads.py`), so "fits at publish" and
"what the worker sends" cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from . import payloads

Scalar = str | int | float | bool | None

# Keys a provider reserves in the data dictionary (FCM rejects them; `aps` is APNs's own).
RESERVED_KEYS = frozenset({"aps", "from", "notification", "message_type", "collapse_key"})
RESERVED_PREFIXES = ("google", "gcm")
MAX_TTL = 2_419_200  # 28 days: the longest FCM and APNs keep a message
MAX_DATA_ENTRIES = 32
WORST_EVENT_ID = "9" * 48  # longer than any id the bus assigns, so a fit at publish is a fit at send


def reserved_key(key: str) -> bool:
    return key in RESERVED_KEYS or key.lower().startswith(RESERVED_PREFIXES)


class PushSpec(BaseModel):
    """How an event becomes a push: silent (the app refreshes) or an alert the user sees."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["silent", "alert"] = "silent"
    title: str | None = Field(None, max_length=256)
    body: str | None = Field(None, max_length=2048)
    badge: int | None = Field(None, ge=0)
    sound: str | None = Field(None, max_length=256)
    thread_id: str | None = Field(None, max_length=64)
    collapse_key: str | None = Field(None, max_length=64)  # APNs apns-collapse-id allows 64 bytes
    priority: Literal["high", "normal"] | None = None
    ttl: int | None = Field(None, ge=0, le=MAX_TTL)
    data: dict[str, Scalar] = Field(default_factory=dict)  # small ids only: the app fetches content

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value not in ("silent", "alert"):
                raise ValueError('push must be "silent", "alert" or an object')
            return {"mode": value}
        return value

    @field_validator("data")
    @classmethod
    def _small_ids(cls, data: dict[str, Scalar]) -> dict[str, Scalar]:
        if len(data) > MAX_DATA_ENTRIES:
            raise ValueError(f"at most {MAX_DATA_ENTRIES} entries (payloads carry ids, not content)")
        for key, value in data.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", key):
                raise ValueError(f"key {key!r} must be 1-64 letters, digits, '_', '.', '-'")
            if reserved_key(key):
                raise ValueError(f"key {key!r} is reserved by a push provider")
            if isinstance(value, str) and len(value) > 256:
                raise ValueError(f"value of {key!r} is longer than 256 characters")
        return data

    @model_validator(mode="after")
    def _alert_has_text(self) -> PushSpec:
        if self.mode == "alert" and not (self.title or self.body):
            raise ValueError("an alert push needs a title or a body")
        return self


def ensure_push_fits(spec: PushSpec, event_type: str, data: Mapping[str, Any]) -> None:
    """Raise ValueError naming the provider and the sizes when a payload cannot fit a provider's limit."""
    from .base import Notification  # local: base imports spec only for typing

    note = Notification(event_id=WORST_EVENT_ID, event_type=event_type, spec=spec, data=data)
    sizes = (
        ("APNs", len(payloads.apns_payload(note)), payloads.APNS_MAX_PAYLOAD),
        ("FCM", payloads.fcm_payload_size(note), payloads.FCM_MAX_PAYLOAD),
        ("Web Push", len(payloads.webpush_plaintext(note)), payloads.WEBPUSH_MAX_PLAINTEXT),
    )
    for provider, size, limit in sizes:
        if size > limit:
            raise ValueError(
                f"the push payload is {size} bytes for {provider}, over its limit of {limit} bytes; "
                "send ids and let the app fetch the content"
            )
