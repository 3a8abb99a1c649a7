"""Delivery policy: presence (who is online anywhere) and debounce windows (leading + trailing edge)."""

from __future__ import annotations

from .presence import MemoryPresence, Presence, PresenceOptions, PresenceStatus, create_presence

__all__ = ["MemoryPresence", "Presence", "PresenceOptions", "PresenceStatus", "create_presence"]
