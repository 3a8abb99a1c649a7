"""Push providers (APNs, FCM, Web Push) behind one contract (base.py), built from Settings here.

What every answer becomes (one table for all providers; the worker acts on the outcome):

    delivered    APNs 200 | FCM 200 | Web Push 2xx
    dead_token   APNs 410 Unregistered/ExpiredToken, 400 BadDeviceToken/DeviceTokenNotForTopic/TopicDisallowed
                 | FCM UNREGISTERED, SENDER_ID_MISMATCH, INVALID_ARGUMENT naming the token
                 | Web Push 404, 410, subscription keys that cannot work
    retry_later  APNs 429, 5xx | FCM QUOTA_EXCEEDED (Retry-After, else 60 s), UNAVAILABLE, INTERNAL, 5xx
                 | Web Push 429, 5xx | all: timeouts, lost connections; Retry-After honoured when present
    credentials  APNs 403 (ExpiredProviderToken only after one refresh and resend), InvalidProviderToken...
                 | FCM THIRD_PARTY_AUTH_ERROR, 401 after one fresh access token, 403, OAuth refused
                 | Web Push 401, 403 (VAPID refused)
    rejected     APNs 413 PayloadTooLarge, 400 BadTopic and other 4xx | FCM INVALID_ARGUMENT about the message,
                 other 4xx | Web Push 413, 400, other 4xx, endpoints outside the allowed hosts
    skipped      provider not configured (`not_configured`): no request is made

Unknown answers never raise: unknown 5xx retry, unknown 4xx are rejected.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .apns import ApnsProvider
from .base import Notification, Outcome, Provider, Result, Target
from .fcm import FcmProvider, load_service_account
from .transport import DEFAULT_TIMEOUT, Transport
from .vapid import VapidKey
from .webpush import WebPushProvider

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "ApnsProvider",
    "FcmProvider",
    "Notification",
    "Outcome",
    "Provider",
    "Result",
    "Target",
    "Transport",
    "WebPushProvider",
    "build_providers",
    "load_vapid_key",
]


def _read(path: Path | None, text: str) -> tuple[bytes | None, str]:
    """A secret given as a file path or as its text; (content, problem)."""
    if text:
        return text.encode(), ""
    if path is None:
        return None, ""
    try:
        return path.read_bytes(), ""
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror}"


def load_vapid_key(settings: Settings) -> VapidKey | None:
    """The VAPID key, or None when not configured; raises ValueError for an unreadable or invalid key."""
    if settings.vapid_private_key_path is None:
        return None
    try:
        return VapidKey.load(settings.vapid_private_key_path)
    except OSError as exc:
        raise ValueError(f"TIDINGS_VAPID_PRIVATE_KEY_PATH: cannot read: {exc.strerror}") from exc


def build_providers(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    transports: Mapping[str, Transport] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Provider]:
    """One provider per service, configured or not (an unconfigured one answers `skipped`).

    `transports` (by provider name) replaces the transport a provider builds itself: the same class and
    send path, with the test's deadlines, TLS trust or limits."""
    transports = transports or {}

    def http(name: str) -> dict[str, Any]:
        return {"transport": transports.get(name), "timeout": timeout}

    apns_key, apns_problem = _read(settings.apns_key_path, settings.apns_key)
    apns = ApnsProvider(
        key_pem=apns_key,
        key_id=settings.apns_key_id,
        team_id=settings.apns_team_id,
        topic=settings.apns_topic,
        base_url=settings.apns_url,
        clock=clock,
        **http("apns"),
    )
    if not settings.apns_topic:
        apns.missing = ", ".join(filter(None, [apns.missing, "TIDINGS_APNS_TOPIC"]))
    if apns_problem:
        apns.missing = apns_problem

    fcm_text, fcm_problem = _read(settings.fcm_credentials_path, settings.fcm_credentials)
    info: dict[str, Any] | None = None
    if fcm_text is not None:
        try:
            info = load_service_account(fcm_text.decode())
        except ValueError as exc:
            fcm_problem = f"TIDINGS_FCM_CREDENTIALS: {exc}"
    fcm = FcmProvider(
        service_account_info=info,
        project_id=settings.fcm_project_id,
        base_url=settings.fcm_url,
        token_url=settings.fcm_token_url,
        clock=clock,
        **http("fcm"),
    )
    if fcm_problem:
        fcm.missing = fcm_problem

    vapid_problem = ""
    try:
        vapid_key = load_vapid_key(settings)
    except ValueError as exc:
        vapid_key, vapid_problem = None, str(exc)
    webpush = WebPushProvider(
        vapid_key=vapid_key,
        subject=settings.vapid_subject,
        clock=clock,
        allowed_hosts=settings.webpush_allowed_hosts,
        http_hosts=settings.webpush_http_hosts,
        **http("webpush"),
    )
    if vapid_problem:
        webpush.missing = vapid_problem
    return {"apns": apns, "fcm": fcm, "webpush": webpush}
