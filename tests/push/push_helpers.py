"""Shared test helpers for the push tests (constants, a movable clock, a Notification maker)."""

from __future__ import annotations

import time

from tidings.push.base import Notification
from tidings.events import PushSpec

KEY_ID, TEAM_ID, TOPIC = "ABC123DEFG", "TEAM456XYZ", "com.example.app"
DEVICE = "a1" * 32


class Clock:
    """Real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def note(
    spec: object = "silent", data: dict[str, object] | None = None, event_id: str = "1700000000000-0"
) -> Notification:
    return Notification(event_id, "order.created", PushSpec.model_validate(spec), data or {"order_id": 42})
