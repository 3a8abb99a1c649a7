"""The event model: what a publisher may send (`EventIn`, its `Audience` and `PushSpec`), validated strictly.

This is the bottom of the package: it imports nothing of ours but `errors`/`config`. Checks that need a higher
layer (does a push payload fit every provider?) come in through the validation context (`Limits.push_fits`),
which the hub fills in. How an event is encoded for the bus and the streams is `wire.py`'s business.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
NAME_PATTERN = r"^[^\s,\x00-\x1f\x7f]+$"  # no whitespace, commas or control characters: names join into lists

Name = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=NAME_PATTERN)]
Scalar = str | int | float | bool | None

# Keys a provider reserves in the data dictionary (FCM rejects them; `aps` is APNs's own).
RESERVED_KEYS = frozenset({"aps", "from", "notification", "message_type", "collapse_key"})
RESERVED_PREFIXES = ("google", "gcm")
MAX_TTL = 2_419_200  # 28 days: the longest FCM and APNs keep a message
MAX_DATA_ENTRIES = 32


def reserved_key(key: str) -> bool:
    return key in RESERVED_KEYS or key.lower().startswith(RESERVED_PREFIXES)


class PushSpec(BaseModel):
    """How an event becomes a push: silent (the app refreshes) or an alert the user sees."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["silent", "alert"] = "silent"
    title: str | None = Field(None, max_length=256)
    body: str | None = Field(None, max_length=2048)
    badge: int | None = Field(None, ge=0)
    sound: str | None = Field(None, max_length=256)
    thread_id: str | None = Field(None, max_length=64)
    collapse_key: str | None = Field(None, max_length=64)  # APNs apns-collapse-id allows 64 bytes
    priority: Literal["high", "normal"] | None = None
    ttl: int | None = Field(None, ge=0, le=MAX_TTL)
    data: dict[str, Scalar] = Field(default_factory=dict)  # small ids only: the app fetches content

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value not in ("silent", "alert"):
                raise ValueError('push must be "silent", "alert" or an object')
            return {"mode": value}
        return value

    @field_validator("data")
    @classmethod
    def _small_ids(cls, data: dict[str, Scalar]) -> dict[str, Scalar]:
        if len(data) > MAX_DATA_ENTRIES:
            raise ValueError(f"at most {MAX_DATA_ENTRIES} entries (payloads carry ids, not content)")
        for key, value in data.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", key):
                raise ValueError(f"key {key!r} must be 1-64 letters, digits, '_', '.', '-'")
            if reserved_key(key):
                raise ValueError(f"key {key!r} is reserved by a push provider")
            if isinstance(value, str) and len(value) > 256:
                raise ValueError(f"value of {key!r} is longer than 256 characters")
        return data

    @model_validator(mode="after")
    def _alert_has_text(self) -> PushSpec:
        if self.mode == "alert" and not (self.title or self.body):
            raise ValueError("an alert push needs a title or a body")
        return self


PushFitCheck = Callable[[PushSpec, str, Mapping[str, Any]], None]
"""Raises ValueError (naming the provider and sizes) when an event's push payload cannot fit a provider."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What a publisher may not exceed; passed as the validation context (`{"limits": Limits(...)}`)."""

    max_data_bytes: int = 4096
    max_audience: int = 1000
    push_fits: PushFitCheck | None = None  # filled in by the hub from the push layer


def _limits(info: ValidationInfo) -> Limits:
    context = info.context or {}
    limits = context.get("limits") if isinstance(context, dict) else None
    return limits if isinstance(limits, Limits) else Limits()


class Audience(BaseModel):
    """Who an event is for: any of users, roles, topics, or everyone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    users: list[Name] = Field(default_factory=list)
    roles: list[Name] = Field(default_factory=list)
    topics: list[Name] = Field(default_factory=list)
    broadcast: bool = False

    @field_validator("users", "roles", "topics")
    @classmethod
    def _bounded(cls, names: list[str], info: ValidationInfo) -> list[str]:
        limit = _limits(info).max_audience
        if len(names) > limit:
            raise ValueError(f"at most {limit} names, got {len(names)}")
        return list(dict.fromkeys(names))  # duplicates would only cost work

    @model_validator(mode="after")
    def _not_empty(self) -> Audience:
        if not (self.users or self.roles or self.topics or self.broadcast):
            raise ValueError("the audience is empty: give users, roles, topics or broadcast: true")
        return self

    def channels(self) -> tuple[str, ...]:
        """The bus channels of this audience: `u:<user>`, `r:<role>`, `t:<topic>`, or `*` for everyone."""
        if self.broadcast:
            return ("*",)
        return (
            *(f"u:{user}" for user in self.users),
            *(f"r:{role}" for role in self.roles),
            *(f"t:{topic}" for topic in self.topics),
        )

    def size(self) -> int | str:
        """For logs: how many names, or "broadcast"."""
        return "broadcast" if self.broadcast else len(self.users) + len(self.roles) + len(self.topics)


class EventIn(BaseModel):
    """An event as a publisher sends it. The hub assigns the id."""

    model_config = ConfigDict(extra="forbid")

    type: Annotated[str, StringConstraints(max_length=128, pattern=TYPE_PATTERN)]
    data: dict[str, Any] = Field(default_factory=dict)
    to: Audience
    occurred_at: datetime | None = None
    push: PushSpec | None = None

    @field_validator("data")
    @classmethod
    def _small(cls, data: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        limit = _limits(info).max_data_bytes
        try:
            size = len(orjson.dumps(data))
        except TypeError as exc:  # only reachable from Python callers passing non-JSON values
            raise ValueError(f"data is not JSON-serialisable: {exc}") from exc
        if size > limit:
            raise ValueError(f"data is {size} bytes once encoded; the limit is {limit}")
        return data

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("occurred_at needs a time zone (e.g. a trailing Z)")
        try:
            value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+14:00 is a valid ISO time with no UTC equivalent
            raise ValueError("occurred_at is out of range once converted to UTC") from None
        return value

    @model_validator(mode="after")
    def _push_fits(self, info: ValidationInfo) -> EventIn:
        check = _limits(info).push_fits
        if self.push is not None and check is not None:
            check(self.push, self.type, self.data)
        return self

    def public(self, now: datetime) -> dict[str, object]:
        """What every recipient sees (without the id, which the bus assigns)."""
        return {"type": self.type, "data": self.data, "occurred_at": iso_utc(self.occurred_at or now)}


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
