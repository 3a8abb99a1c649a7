"""Push providers (APNs, FCM, Web Push) behind one contract (base.py), built from Settings here."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from ._http import DEFAULT_TIMEOUT
from .apns import ApnsProvider
from .base import Notification, Outcome, Provider, Result, Target
from .fcm import FcmProvider, load_service_account
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
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    clients: Mapping[str, httpx.AsyncClient] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Provider]:
    """One provider per service, configured or not (an unconfigured one answers `skipped`)."""
    transports, clients = transports or {}, clients or {}

    def http(name: str) -> dict[str, Any]:
        return {"client": clients.get(name), "transport": transports.get(name), "timeout": timeout}

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
