"""Payload builders shared by the providers and the publish-time size check (`ensure_push_fits`).

Every push carries `{"type": <event type>, "event_id": <id>}` plus small ids: the spec's `data` when given,
else the event data's top-level scalars named `id` or `*_id`. The app fetches the content itself. A spec with
`badge: "unread"` is built per unread count (`Notification.unread`): the APNs badge, and `badge` in the data.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from typing import Any

import orjson

from ..events import PushSpec, reserved_key
from .base import Notification

APNS_MAX_PAYLOAD = 4096
FCM_MAX_PAYLOAD = 4096
# 4096-byte push-service body - 86-byte aes128gcm header - 16-byte tag - 1 padding delimiter (RFC 8291 §4)
WEBPUSH_MAX_PLAINTEXT = 3993
DEFAULT_WEBPUSH_TTL = 86_400  # a day; pywebpush's default of 0 drops messages for offline browsers


WORST_EVENT_ID = "9" * 48  # longer than any id the bus assigns, so a fit at publish is a fit at send
WORST_UNREAD = 9_999_999  # more digits than an inbox's unread count can have (its window is at most 100,000)


def _id_key(key: str) -> bool:
    return (key == "id" or key.endswith("_id")) and not reserved_key(key)


def custom_data(note: Notification) -> dict[str, Any]:
    """The app-visible keys of every payload."""
    out: dict[str, Any] = {"type": note.event_type, "event_id": note.event_id}
    out.update(push_data(note.spec, note.data))
    if note.spec.badge == "unread" and note.unread is not None:
        out["badge"] = note.unread
    return out


def badge(note: Notification) -> int | None:
    """The badge number: the spec's, or the recipient's unread count for `badge: "unread"` (None: no badge)."""
    return note.unread if note.spec.badge == "unread" else note.spec.badge


def push_data(spec: PushSpec, data: Mapping[str, Any]) -> dict[str, Any]:
    """The keys a push carries beside type and event id: the spec's `data` when given, else the event data's
    top-level scalars named `id` or `*_id`."""
    if spec.data:
        return dict(spec.data)
    return {
        key: value
        for key, value in data.items()
        if _id_key(key) and (value is None or isinstance(value, str | int | float | bool))
    }


def fcm_data(note: Notification) -> dict[str, str]:
    """FCM `data` must map strings to strings."""
    return {key: _as_string(value) for key, value in custom_data(note).items()}


def _as_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return orjson.dumps(value).decode()  # true/false, numbers as JSON writes them


def aps(note: Notification) -> dict[str, Any]:
    """The `aps` dictionary: exactly content-available for silent pushes (Apple's background rule)."""
    spec = note.spec
    if spec.mode == "silent":
        return {"content-available": 1}
    alert: dict[str, str] = {}
    if spec.title:
        alert["title"] = spec.title
    if spec.body:
        alert["body"] = spec.body
    out: dict[str, Any] = {"alert": alert}
    number = badge(note)
    if number is not None:
        out["badge"] = number
    if spec.sound:
        out["sound"] = spec.sound
    if spec.thread_id:
        out["thread-id"] = spec.thread_id
    if spec.interruption_level:  # "time-sensitive" for critical events: breaks through Focus modes
        out["interruption-level"] = spec.interruption_level
    return out


def apns_payload(note: Notification) -> bytes:
    return orjson.dumps({"aps": aps(note), **custom_data(note)})


def apns_push_type(note: Notification) -> str:
    return "background" if note.spec.mode == "silent" else "alert"


def apns_priority(note: Notification) -> str:
    # Background pushes must be 5; Apple rejects priority 10 with content-available only.
    if note.spec.mode == "silent" or note.spec.priority == "normal":
        return "5"
    return "10"


def apns_collapse_id(note: Notification) -> str | None:
    return note.spec.collapse_key or note.spec.thread_id


def fcm_notification(note: Notification) -> dict[str, str] | None:
    if note.spec.mode != "alert":
        return None
    out: dict[str, str] = {}
    if note.spec.title:
        out["title"] = note.spec.title
    if note.spec.body:
        out["body"] = note.spec.body
    return out


def fcm_payload_size(note: Notification) -> int:
    """What FCM counts against its 4096-byte limit: the data and notification keys."""
    counted: dict[str, Any] = {"data": fcm_data(note)}
    notification = fcm_notification(note)
    if notification:
        counted["notification"] = notification
    return len(orjson.dumps(counted))


def webpush_plaintext(note: Notification) -> bytes:
    """What the service worker receives: the custom keys, plus `notification` for alerts."""
    body = custom_data(note)
    spec = note.spec
    if spec.mode == "alert":
        shown: dict[str, Any] = {"title": spec.title or "", "body": spec.body or ""}
        if spec.collapse_key or spec.thread_id:
            shown["tag"] = spec.collapse_key or spec.thread_id
        number = badge(note)
        if number is not None:
            shown["badge"] = number
        if spec.sound:
            shown["sound"] = spec.sound
        body["notification"] = shown
    return orjson.dumps(body)


def webpush_urgency(note: Notification) -> str:
    if note.spec.priority:
        return note.spec.priority
    return "high" if note.spec.mode == "alert" else "normal"


def webpush_ttl(note: Notification) -> int:
    return DEFAULT_WEBPUSH_TTL if note.spec.ttl is None else note.spec.ttl


def webpush_topic(note: Notification) -> str | None:
    """RFC 8030 Topic: at most 32 characters of the URL-safe base64 alphabet; other keys are hashed to fit."""
    key = note.spec.collapse_key or note.spec.thread_id
    if not key:
        return None
    if re.fullmatch(r"[A-Za-z0-9_-]{1,32}", key):
        return key
    return base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()).decode()[:32]


def fcm_message(note: Notification, now: float) -> dict[str, Any]:
    """An FCM v1 message without its `token`: data, notification for alerts, and the per-platform blocks."""
    spec = note.spec
    message: dict[str, Any] = {"data": fcm_data(note)}
    notification = fcm_notification(note)
    if notification:
        message["notification"] = notification
    high = spec.priority == "high" or (spec.priority is None and spec.mode == "alert")
    android: dict[str, Any] = {"priority": "HIGH" if high else "NORMAL"}
    collapse = spec.collapse_key or spec.thread_id
    if spec.ttl is not None:
        android["ttl"] = f"{spec.ttl}s"
    if collapse:
        android["collapse_key"] = collapse
    if spec.mode == "alert" and (spec.sound or collapse):
        # Android shows one notification per tag (a thread or collapse key) and plays `sound` if given.
        android["notification"] = {k: v for k, v in (("sound", spec.sound), ("tag", collapse)) if v}
    apns_headers = {"apns-push-type": apns_push_type(note), "apns-priority": apns_priority(note)}
    if spec.ttl is not None:
        apns_headers["apns-expiration"] = "0" if spec.ttl == 0 else str(int(now) + spec.ttl)
    if collapse:
        apns_headers["apns-collapse-id"] = collapse
    webpush_headers = {"TTL": str(webpush_ttl(note)), "Urgency": webpush_urgency(note)}
    topic = webpush_topic(note)
    if topic:
        webpush_headers["Topic"] = topic
    message["android"] = android
    message["apns"] = {"headers": apns_headers, "payload": {"aps": aps(note)}}
    message["webpush"] = {"headers": webpush_headers}
    return message


def ensure_push_fits(spec: PushSpec, event_type: str, data: Mapping[str, Any]) -> None:
    """Raise ValueError naming the provider and the sizes when a payload cannot fit a provider's limit.

    Built by the same functions the providers use, so "fits at publish" and "what the worker sends" cannot
    drift apart. The hub hands this to event validation (`events.Limits.push_fits`).
    """
    unread = WORST_UNREAD if spec.badge == "unread" else None
    note = Notification(event_id=WORST_EVENT_ID, event_type=event_type, spec=spec, data=data, unread=unread)
    sizes = (
        ("APNs", len(apns_payload(note)), APNS_MAX_PAYLOAD),
        ("FCM", fcm_payload_size(note), FCM_MAX_PAYLOAD),
        ("Web Push", len(webpush_plaintext(note)), WEBPUSH_MAX_PLAINTEXT),
    )
    for provider, size, limit in sizes:
        if size > limit:
            raise ValueError(
                f"the push payload is {size} bytes for {provider}, over its limit of {limit} bytes; "
                "send ids and let the app fetch the content"
            )


# --- coalesced pushes (debounce windows, quiet-hours releases) ---------------------------------------------

MAX_COLLAPSE_ID = 64  # apns-collapse-id's limit in bytes


def collapse_id(key: str) -> str:
    """A collapse key for a debounce key or scope: the key itself when short enough, else a stable hash."""
    if len(key.encode()) <= MAX_COLLAPSE_ID:
        return key
    return "h:" + base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()).decode().rstrip("=")


def fit_push(spec: PushSpec, event_type: str, data: Mapping[str, Any]) -> PushSpec:
    """`spec` cut down until its payload fits every provider: the longest list in its `data` loses its
    oldest half at a time, then the `coalesced` count goes. A merged push can outgrow what was checked at
    publish; this keeps the newest ids rather than losing the push. ValueError if nothing helps."""
    while True:
        try:
            ensure_push_fits(spec, event_type, data)
            return spec
        except ValueError:
            lists = {k: v for k, v in spec.data.items() if isinstance(v, list) and v}
            if lists:
                name = max(lists, key=lambda k: len(orjson.dumps(lists[k])))
                cut = lists[name][len(lists[name]) // 2 :] if len(lists[name]) > 1 else []
                spec = spec.model_copy(update={"data": {**spec.data, name: cut}})
            elif "coalesced" in spec.data:
                spec = spec.model_copy(
                    update={"data": {k: v for k, v in spec.data.items() if k != "coalesced"}}
                )
            else:
                raise
