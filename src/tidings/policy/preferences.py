"""What a user wants delivered: the Preferences document, its validation and its merge-patch semantics.

Shape (the body of `GET/PUT/PATCH /v1/preferences`; every field optional, unset = allowed):

    {"push": false,                                   # all pushes off
     "quiet_hours": {"start": "22:00", "end": "07:00",  # local wall time, HH:MM (24 h); start != end
                     "weekdays": ["mon", "tue"],        # the day a window STARTS on; omitted = every day
                     "timezone": "Europe/Berlin",       # IANA; omitted = the user's most recent device's zone
                     "mode": "hold"},                   # hold (release when the hours end) | drop
     "scopes": {"conversation:42": {"muted": true, "muted_until": "2026-11-23T06:00:00Z",
                                    "push": false, "stream": true}}}

A scope is an event type (`message.new`), a topic or an app key (`conversation:42`): 1-128 of
A-Z a-z 0-9 _ . : / - starting with a letter or digit (so `PUT /v1/preferences/scopes/{scope}` needs a
`{scope:path}` route). Budget: at most MAX_SCOPES (256) scopes per user, ~100 bytes each, so a document stays
under ~32 KB; the store may enforce a lower budget (`TIDINGS_PREFERENCES_MAX_SCOPES`).

Mute rules: `muted_until` set implies `muted: true`; `muted: false` clears `muted_until`; a mute whose
`muted_until` has passed is no mute. A scope whose fields are all unset is dropped (it says nothing).

PUT replaces the whole document (or one scope); PATCH is a JSON Merge Patch (RFC 7396) applied to the stored
document and the result validated as a whole: a member absent = unchanged, `null` = cleared (back to unset;
`"scopes": {"x": null}` deletes scope x, `"quiet_hours": null` removes quiet hours), objects merge member by
member, arrays (`weekdays`) are replaced. One convenience: a scope patch setting `muted_until` without naming
`muted` also sets `muted: true` (so "mute for 8 hours" is one member).
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Mapping
from datetime import UTC, datetime, time
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tidings.errors import InvalidPreferences
from tidings.events import SCOPE_PATTERN, ScopeName  # one definition: events name the scopes users mute

__all__ = [
    "MAX_SCOPES",
    "SCOPE_PATTERN",
    "WEEKDAYS",
    "InvalidPreferences",
    "Preferences",
    "QuietHours",
    "ScopePrefs",
    "field_errors",
    "merge_patch",
    "parse_preferences",
    "parse_scope",
    "valid_scope",
    "zone",
]

MAX_SCOPES = 256
_SCOPE_RE = re.compile(SCOPE_PATTERN)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = datetime.weekday()
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """pydantic's errors as `[{"field": "quiet_hours.timezone", "message": ...}]`."""
    return [
        {
            "field": ".".join(str(part) for part in err["loc"]),
            "message": err["msg"].removeprefix("Value error, "),
        }
        for err in exc.errors()
    ]


def valid_scope(name: str) -> bool:
    return _SCOPE_RE.fullmatch(name) is not None


@functools.cache
def _known_zones() -> frozenset[str]:
    # Only real IANA keys: ZoneInfo alone also opens files such as "localtime" or "posixrules".
    return frozenset(zoneinfo.available_timezones() - {"Factory", "localtime", "posixrules"}) | {"UTC"}


@functools.lru_cache(maxsize=1024)
def zone(key: str) -> zoneinfo.ZoneInfo:
    """The ZoneInfo of an IANA key (cached); raises ValueError for an unknown or unsafe key."""
    if key not in _known_zones():
        raise ValueError("timezone must be an IANA time zone such as Europe/Berlin")
    try:
        return zoneinfo.ZoneInfo(key)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError("timezone must be an IANA time zone such as Europe/Berlin") from None


def _hhmm(value: object) -> object:
    if isinstance(value, time):
        return value.replace(second=0, microsecond=0, tzinfo=None)
    if not isinstance(value, str) or not _HHMM.fullmatch(value):
        raise ValueError("must be a 24-hour time HH:MM, such as 07:30")
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


WallTime = Annotated[
    time, BeforeValidator(_hhmm), PlainSerializer(lambda t: t.strftime("%H:%M"), return_type=str)
]


class QuietHours(BaseModel):
    """Hours in which alert pushes are held (or dropped). A window crossing midnight belongs to its start day."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: WallTime
    end: WallTime
    weekdays: tuple[Weekday, ...] | None = None
    timezone: str | None = Field(default=None, max_length=64)
    mode: Literal["hold", "drop"] = "hold"

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("give at least one day, or leave weekdays out for every day")
        return tuple(day for day in WEEKDAYS if day in value)  # week order, no duplicates

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        if value is not None:
            zone(value)
        return value

    @field_validator("end")
    @classmethod
    def _not_empty(cls, value: time, info: ValidationInfo) -> time:
        if info.data.get("start") == value:
            raise ValueError("start and end must differ (quiet hours of zero or 24 hours are not a window)")
        return value

    @property
    def start_minute(self) -> int:
        return self.start.hour * 60 + self.start.minute

    @property
    def end_minute(self) -> int:
        return self.end.hour * 60 + self.end.minute


class ScopePrefs(BaseModel):
    """One scope's settings; None = unset = allowed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    muted: StrictBool | None = None
    muted_until: AwareDatetime | None = None
    push: StrictBool | None = None
    stream: StrictBool | None = None

    @model_validator(mode="before")
    @classmethod
    def _mute_rules(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            if data.get("muted") is False and data.get("muted_until") is not None:
                data = {k: v for k, v in data.items() if k != "muted_until"}
            elif data.get("muted_until") is not None and data.get("muted") is None:
                data = {**data, "muted": True}
        return data

    @field_validator("muted_until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    def is_muted(self, now: float) -> bool:
        """Muted at `now` (epoch seconds): muted, and its `muted_until` (if any) still ahead."""
        if not self.muted:
            return False
        until = self.muted_until
        return until is None or until.timestamp() > now

    @property
    def mute_ends(self) -> float | None:
        """When the mute ends (epoch seconds; inf = never), or None when not muted."""
        if not self.muted:
            return None
        return float("inf") if self.muted_until is None else self.muted_until.timestamp()

    def is_empty(self) -> bool:
        return self.muted is None and self.push is None and self.stream is None


class Preferences(BaseModel):
    """A user's whole preference document. `Preferences()` (all unset) allows everything."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    push: StrictBool | None = None
    quiet_hours: QuietHours | None = None
    scopes: dict[ScopeName, ScopePrefs] = Field(default_factory=dict, max_length=MAX_SCOPES)

    # The zone of the user's most recent device, set by the store when it reads; used when quiet_hours has
    # no timezone of its own. Not part of the document.
    _device_timezone: str | None = PrivateAttr(default=None)

    @field_validator("scopes")
    @classmethod
    def _drop_empty(cls, value: dict[str, ScopePrefs]) -> dict[str, ScopePrefs]:
        if all(not prefs.is_empty() for prefs in value.values()):
            return value
        return {name: prefs for name, prefs in value.items() if not prefs.is_empty()}

    def document(self) -> dict[str, Any]:
        """The JSON form (API body and stored document): unset fields (and no scopes) left out."""
        return self.model_dump(mode="json", exclude_none=True, exclude=None if self.scopes else {"scopes"})

    def to_json(self) -> str:
        """`document()` as compact JSON text (what the store keeps)."""
        return self.model_dump_json(exclude_none=True, exclude=None if self.scopes else {"scopes"})

    def with_device_timezone(self, key: str | None) -> Preferences:
        """This document, using `key` as the quiet-hours zone when it names none (an invalid key is ignored)."""
        if key is not None:
            try:
                zone(key)
            except ValueError:
                key = None
        found = self.model_copy()  # a copy: stores share parsed documents between users
        found._device_timezone = key
        return found

    def quiet_zone(self) -> zoneinfo.ZoneInfo:
        """The zone quiet hours are read in: their own, else the user's device's, else UTC."""
        hours = self.quiet_hours
        key = (hours.timezone if hours is not None else None) or self._device_timezone or "UTC"
        return zone(key)

    def patched(self, patch: Mapping[str, Any]) -> Preferences:
        """This document with a JSON Merge Patch applied (see the module docstring); InvalidPreferences."""
        return parse_preferences(merge_patch(self.document(), _imply_muted(patch)))

    def with_scope(self, name: str, prefs: ScopePrefs | None) -> Preferences:
        """This document with scope `name` replaced (None: removed)."""
        if not valid_scope(name):
            raise InvalidPreferences([{"field": "scope", "message": _SCOPE_MESSAGE}])
        scopes = {k: v for k, v in self.scopes.items() if k != name}
        if prefs is not None and not prefs.is_empty():
            scopes[name] = prefs
        if len(scopes) > MAX_SCOPES:
            raise InvalidPreferences([{"field": "scopes", "message": f"at most {MAX_SCOPES} scopes"}])
        return self.model_copy(update={"scopes": scopes})


_SCOPE_MESSAGE = "a scope is 1-128 of A-Z a-z 0-9 _ . : / - starting with a letter or digit"


def parse_preferences(data: Any) -> Preferences:
    """Validate a document (PUT body, merged patch); InvalidPreferences names each offending field."""
    try:
        return Preferences.model_validate(data)
    except ValidationError as exc:
        raise InvalidPreferences(field_errors(exc)) from None


def parse_scope(data: Any) -> ScopePrefs:
    """Validate one scope's settings (the body of PUT /v1/preferences/scopes/{scope})."""
    try:
        return ScopePrefs.model_validate(data)
    except ValidationError as exc:
        raise InvalidPreferences(field_errors(exc)) from None


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON Merge Patch: `patch` applied to `target` (neither is modified)."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _imply_muted(patch: Mapping[str, Any]) -> Mapping[str, Any]:
    """`{"scopes": {"x": {"muted_until": T}}}` also sets muted: a stored `muted: false` must not swallow it."""
    scopes = patch.get("scopes")
    if not isinstance(scopes, Mapping):
        return patch
    implied = {
        name: {**body, "muted": True}
        if isinstance(body, Mapping) and body.get("muted_until") is not None and "muted" not in body
        else body
        for name, body in scopes.items()
    }
    return {**patch, "scopes": implied}
