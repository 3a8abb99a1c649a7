"""Which debounce window an event gets on each transport: its own `debounce` over its type's default.

Debounce is off unless an event or its type asks for it (`TIDINGS_DEBOUNCE`, `Hub(debounce=...)`); a critical
event is never debounced. Keys are JSON arrays, so no choice of names can make two windows collide:

    stream: ["s", type, group, scope, audience]   audience = {"u": [...], "r": [...], "t": [...], "b": true}
    push:   ["p", type, group, scope, user]

`group` is the event's `debounce.key`, else its scope (else its type). The type is part of both keys: a merged
event has one type, so events of two types never share a window even under one scope.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from ..config import DebounceDefault
from ..events import Audience, EventIn

__all__ = ["Window", "audience_key", "parse_defaults", "push_key", "stream_key", "window_of"]

Defaults = Mapping[str, DebounceDefault]


@dataclass(frozen=True, slots=True)
class Window:
    """A resolved window: seconds, the max_wait to pass to the store (None: fixed), and the grouping key."""

    seconds: float
    max_wait: float | None
    group: str

    def as_policy(self) -> dict[str, Any]:
        out: dict[str, Any] = {"window": self.seconds, "key": self.group}
        if self.max_wait is not None:
            out["max_wait"] = self.max_wait
        return out

    @classmethod
    def from_policy(cls, raw: Mapping[str, Any]) -> Window:
        return cls(float(raw["window"]), raw.get("max_wait"), str(raw["key"]))


def parse_defaults(raw: Mapping[str, Any] | None) -> dict[str, DebounceDefault]:
    """`Hub(debounce=...)`: {type: DebounceDefault | {"stream": s, "push": s, "max_wait": s}}."""
    return {
        name: value if isinstance(value, DebounceDefault) else DebounceDefault.model_validate(value)
        for name, value in (raw or {}).items()
    }


def window_of(event: EventIn, defaults: Defaults, transport: Literal["stream", "push"]) -> Window | None:
    """The event's window on `transport`, or None when it is not debounced there."""
    if event.critical:
        return None
    own = event.debounce
    if own is None and not defaults:
        return None  # the common case: two attribute reads
    default = defaults.get(event.type)
    seconds = getattr(own, transport) if own is not None else None
    if seconds is None:
        seconds = getattr(default, transport) if default is not None else 0.0
    if not seconds:
        return None
    max_wait = own.max_wait if own is not None and own.max_wait is not None else None
    if max_wait is None and default is not None:
        max_wait = default.max_wait
    group = (own.key if own is not None else None) or event.effective_scope
    return Window(seconds, max_wait if max_wait is not None and max_wait > seconds else None, group)


def audience_key(audience: Audience) -> dict[str, Any]:
    """The audience in a canonical, compact form (sorted names; empty parts left out)."""
    out: dict[str, Any] = {}
    if audience.broadcast:
        out["b"] = True
        return out
    for short, names in (("u", audience.users), ("r", audience.roles), ("t", audience.topics)):
        if names:
            out[short] = sorted(names)
    return out


def audience_of(key: Mapping[str, Any]) -> Audience:
    return Audience(
        users=list(key.get("u", ())),
        roles=list(key.get("r", ())),
        topics=list(key.get("t", ())),
        broadcast=bool(key.get("b", False)),
    )


def stream_key(event: EventIn, window: Window) -> str:
    return orjson.dumps(["s", event.type, window.group, event.scope, audience_key(event.to)]).decode()


def push_key(event_type: str, group: str, scope: str | None, user: str) -> str:
    return orjson.dumps(["p", event_type, group, scope, user]).decode()


def parse_key(key: str) -> list[Any]:
    parsed: list[Any] = orjson.loads(key)
    return parsed
