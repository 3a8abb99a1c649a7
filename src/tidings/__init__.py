"""tidings: a notification hub — authenticated SSE streams and APNs, FCM and Web Push delivery."""

from __future__ import annotations

__version__ = "0.1.0"

from .auth import Principal, TopicAccessRule
from .config import Settings, load_settings
from .events import Audience, EventIn
from .hub import Hub

Event = EventIn

__all__ = [
    "Audience",
    "Event",
    "EventIn",
    "Hub",
    "Principal",
    "Settings",
    "TopicAccessRule",
    "__version__",
    "load_settings",
]
