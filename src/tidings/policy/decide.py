"""The decision: what happens to one push for one user, and whether a user's streams get an event of a scope.

Pure and fast (no I/O, no allocation on the common paths): the worker calls `decide` once per (push, user)
with preferences and presence it fetched for the whole audience in one round trip each.

The order of the checks is the order of the reasons' precedence, so a delivery log names the most
fundamental one: presence (the publisher asked for offline-only) → push off → this scope's push off → muted
→ quiet hours. Unset preferences allow; a send needs every applicable scope to allow it. `critical` (security
alerts) bypasses mute and quiet hours — not presence, not a user's explicit push off. Silent pushes (state
syncs) are not held by quiet hours: they do not alert anyone.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from tidings.policy.preferences import Preferences
from tidings.policy.quiet_hours import release_at

__all__ = [
    "SEND",
    "Action",
    "Decision",
    "PushPolicy",
    "Reason",
    "decide",
    "inbox_muted_scopes",
    "stream_allowed",
    "stream_allows",
    "stream_muted_scopes",
]


class Action(StrEnum):
    SEND = "send"
    SKIP = "skip"  # not sent, for `reason`; nothing kept
    HOLD = "hold"  # kept in held_pushes until `release_at`, then released coalesced per (user, scope)
    DROP = "drop"  # quiet hours in mode "drop": not sent, nothing kept


class Reason(StrEnum):
    """Why a push was not sent now; recorded verbatim by the delivery log and as a metrics label."""

    PRESENCE = "presence"  # when="offline" and the user holds a live stream
    PUSH_OFF = "push_off"  # the user turned all pushes off
    SCOPE_PUSH_OFF = "scope_push_off"  # the user turned pushes of this scope off
    MUTED = "muted"  # the scope is muted (and its muted_until, if any, is ahead)
    QUIET_HOURS = "quiet_hours"  # held until the quiet hours end
    QUIET_HOURS_DROP = "quiet_hours_drop"  # dropped: quiet hours in mode "drop"
    # Not returned by decide(): the integrator logs it on the push a held row releases.
    QUIET_HOURS_RELEASED = "quiet_hours_released"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: Reason | None = None
    release_at: float | None = None  # epoch seconds, for HOLD

    @property
    def sends(self) -> bool:
        return self.action is Action.SEND


SEND = Decision(Action.SEND)
_SKIP = {reason: Decision(Action.SKIP, reason) for reason in Reason}
_DROP = Decision(Action.DROP, Reason.QUIET_HOURS_DROP)


@dataclass(frozen=True, slots=True)
class PushPolicy:
    """An event's policy fields, built once per event: the scopes it falls under, primary first."""

    scopes: tuple[str, ...]
    critical: bool = False
    when: Literal["always", "offline"] = "always"
    silent: bool = False

    @classmethod
    def of(
        cls,
        event_type: str,
        scope: str | None = None,
        *,
        critical: bool = False,
        when: Literal["always", "offline"] = "always",
        mode: Literal["alert", "silent"] = "alert",
    ) -> PushPolicy:
        """The event's scope (default: its type) is primary — the key pushes are held and coalesced by; its
        type applies too, so muting `message.new` silences every conversation's messages."""
        scopes = (scope, event_type) if scope is not None and scope != event_type else (event_type,)
        return cls(scopes, critical, when, mode == "silent")

    @property
    def scope(self) -> str:
        return self.scopes[0]


def decide(push: PushPolicy, prefs: Preferences | None, *, online: bool, now: float) -> Decision:
    """What to do with `push` for one user whose preferences are `prefs` (None: none stored)."""
    if online and push.when == "offline":
        return _SKIP[Reason.PRESENCE]
    if prefs is None:
        return SEND
    if prefs.push is False:
        return _SKIP[Reason.PUSH_OFF]
    if prefs.scopes:
        for name in push.scopes:
            scope = prefs.scopes.get(name)
            if scope is None:
                continue
            if scope.push is False:
                return _SKIP[Reason.SCOPE_PUSH_OFF]
            if not push.critical and scope.is_muted(now):
                return _SKIP[Reason.MUTED]
    hours = prefs.quiet_hours
    if hours is None or push.critical or push.silent:
        return SEND
    until = release_at(hours, prefs.quiet_zone(), now)
    if until is None:
        return SEND
    if hours.mode == "drop":
        return _DROP
    return Decision(Action.HOLD, Reason.QUIET_HOURS, until)


# --- streams ----------------------------------------------------------------------------------------------


def stream_muted_scopes(prefs: Preferences | None, now: float) -> tuple[frozenset[str], float | None]:
    """The scopes this user's streams must not get at `now` (muted, or stream off), and when that set next
    changes by itself (the earliest muted_until ahead; None: not before the preferences change).

    The router keeps the set per connection and refreshes it at that time or when the preferences change.
    """
    if prefs is None or not prefs.scopes:
        return frozenset(), None
    blocked: set[str] = set()
    changes: float | None = None
    for name, scope in prefs.scopes.items():
        ends = scope.mute_ends
        if scope.stream is False:
            blocked.add(name)
        elif ends is not None and ends > now:
            blocked.add(name)
            if ends != float("inf") and (changes is None or ends < changes):
                changes = ends
    return frozenset(blocked), changes


def stream_allows(muted: frozenset[str], scopes: tuple[str, ...], *, critical: bool = False) -> bool:
    """Whether a stream whose muted set is `muted` gets an event of `scopes` (critical always goes)."""
    return critical or not muted or muted.isdisjoint(scopes)


def stream_allowed(
    prefs: Preferences | None, scopes: tuple[str, ...], now: float, *, critical: bool = False
) -> bool:
    """The same check straight from preferences (no cached set)."""
    if critical or prefs is None or not prefs.scopes:
        return True
    for name in scopes:
        scope = prefs.scopes.get(name)
        if scope is not None and (scope.stream is False or scope.is_muted(now)):
            return False
    return True


# --- inbox ------------------------------------------------------------------------------------------------


def inbox_muted_scopes(prefs: Preferences | None, now: float) -> tuple[frozenset[str], float | None]:
    """The scopes (or types) whose items do not count as unseen/unread in this user's inbox at `now` — muted,
    `muted_until` ahead; `stream: false` or `push: false` alone mute nothing there — and when that set next
    changes by itself (None: not before the preferences change)."""
    if prefs is None or not prefs.scopes:
        return frozenset(), None
    muted: set[str] = set()
    changes: float | None = None
    for name, scope in prefs.scopes.items():
        ends = scope.mute_ends
        if ends is not None and ends > now:
            muted.add(name)
            if ends != float("inf") and (changes is None or ends < changes):
                changes = ends
    return frozenset(muted), changes
