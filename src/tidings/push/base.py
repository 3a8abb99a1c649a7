"""The provider contract: what a device is to a provider, what one event's push is, and what happened.

What happened to a device is a value (`Result` with an `Outcome`), never an exception: a provider maps every
documented failure, every network error and every unknown answer to one of six outcomes, and the worker acts
on it (disable the device, schedule a retry, alert about credentials, record a permanent failure).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from .transport import TransportError, TransportTimeout

if TYPE_CHECKING:
    from ..events import PushSpec


class Outcome(StrEnum):
    """The one outcome table shared by all providers."""

    delivered = "delivered"  # accepted by the provider
    dead_token = "dead_token"  # the token will never work again: disable the device with the reason
    retry_later = "retry_later"  # transient: retry with backoff, honouring retry_after when set
    credentials = "credentials"  # our credentials are wrong or expired: alert, do not touch the device
    rejected = "rejected"  # permanent for this message (too big, bad topic...): record, do not retry
    skipped = "skipped"  # not attempted (provider not configured)


@dataclass(frozen=True, slots=True)
class Result:
    """What one send to one device came to."""

    outcome: Outcome
    reason: str = ""
    status: int | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """One device, as a provider needs it."""

    device_id: str
    provider: str  # "apns" | "fcm" | "webpush"
    token: str  # APNs hex token | FCM registration token | Web Push endpoint URL
    environment: str | None = None  # APNs "sandbox" | "production"
    topic: str | None = None  # APNs topic (bundle id) override; else settings.apns_topic
    p256dh: str | None = None  # Web Push keys, base64url
    auth: str | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    """One event's push, built once per event; `data` is the event's data."""

    event_id: str
    event_type: str
    spec: PushSpec
    data: Mapping[str, Any]
    unread: int | None = None  # the recipient's unread inbox count, for a spec with badge "unread"


NOT_CONFIGURED = Result(Outcome.skipped, "not_configured")


def transport_failure(error: TransportError) -> Result:
    """No answer (deadline, lost connection, TLS) is transient: retry later. "(not sent)" marks a request the
    server certainly never saw, so that a retry of it is not a duplicate."""
    reason = str(error) if isinstance(error, TransportTimeout) else f"network: {error}"
    if not error.sent:
        reason = f"{reason[:280]} (not sent)"
    return Result(Outcome.retry_later, reason[:300])


def parse_retry_after(value: str | bytes | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    text = (value.decode("latin-1") if isinstance(value, bytes) else value).strip()
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - now)


class Provider(ABC):
    """A push service. `prepare` runs once per event, `send` once per device and never raises."""

    name: ClassVar[str]
    missing: str = ""  # what configuration is missing, in words, when not configured

    @property
    @abstractmethod
    def configured(self) -> bool:
        """Whether credentials are present; an unconfigured provider answers `skipped` to every send."""

    @abstractmethod
    def prepare(self, note: Notification) -> Any:
        """Build the per-event part of the request (payload bytes, headers) once for all devices."""

    @abstractmethod
    async def send(self, target: Target, prepared: Any) -> Result:
        """Deliver to one device; provider and network errors come back as a Result."""

    async def aclose(self) -> None:
        """Release pooled connections."""
        return None
