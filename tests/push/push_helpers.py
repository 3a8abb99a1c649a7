"""Shared test helpers for the push tests (constants, a movable clock, a Notification maker)."""

from __future__ import annotations

from tidings.events import PushSpec
from tidings.push.base import Notification

KEY_ID, TEAM_ID, TOPIC = "ABC123DEFG", "TEAM456XYZ", "com.example.app"
DEVICE = "a1" * 32


def note(
    spec: object = "silent", data: dict[str, object] | None = None, event_id: str = "1700000000000-0"
) -> Notification:
    return Notification(event_id, "order.created", PushSpec.model_validate(spec), data or {"order_id": 42})
