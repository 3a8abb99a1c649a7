"""The event model: what a publisher may send (`EventIn`, its `Audience`, `PushSpec` and `DebounceSpec`),
validated strictly; `InboxSpec`, what an event kept in inboxes shows.

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
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
NAME_PATTERN = r"^[^\s,\x00-\x1f\x7f]+$"  # no whitespace, commas or control characters: names join into lists

# A scope: an event type, a topic or an app key such as `conversation:42` (preferences mute scopes). No spaces:
# it travels on the bus message's first line (wire.py).
SCOPE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/\-]{0,127}$"

Name = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=NAME_PATTERN)]
ScopeName = Annotated[str, StringConstraints(pattern=SCOPE_PATTERN)]
Scalar = str | int | float | bool | None
PushValue = Scalar | list[Scalar]  # lists let a coalesced push carry the union of ids (see DebounceSpec)

# Keys a provider reserves in the data dictionary (FCM rejects them; `aps` is APNs's own).
RESERVED_KEYS = frozenset({"aps", "from", "notification", "message_type", "collapse_key"})
RESERVED_PREFIXES = ("google", "gcm")
MAX_TTL = 2_419_200  # 28 days: the longest FCM and APNs keep a message
MAX_DATA_ENTRIES = 32
MAX_LIST_ITEMS = 100  # per list in a push's data
MAX_WINDOW = 86_400.0  # a debounce window or max_wait: at most a day


def reserved_key(key: str) -> bool:
    return key in RESERVED_KEYS or key.lower().startswith(RESERVED_PREFIXES)


def _badge(value: Any) -> Any:
    # checked here so a bad value gets one plain message, not one per member of the union
    if value is None or value == "unread" or (type(value) is int and value >= 0):
        return value
    raise ValueError('badge must be a number >= 0 or "unread"')


class PushSpec(BaseModel):
    """How an event becomes a push: silent (the app refreshes) or an alert the user sees."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["silent", "alert"] = "silent"
    title: str | None = Field(None, max_length=256)
    body: str | None = Field(None, max_length=2048)
    # a number, or "unread": the user's unread inbox count at send time (APNs badge, FCM/Web Push data)
    badge: Annotated[
        int | Literal["unread"] | None,
        BeforeValidator(
            _badge, json_schema_input_type=Annotated[int, Field(ge=0)] | Literal["unread"] | None
        ),
    ] = None
    sound: str | None = Field(None, max_length=256)
    thread_id: str | None = Field(None, max_length=64)
    collapse_key: str | None = Field(None, max_length=64)  # APNs apns-collapse-id allows 64 bytes
    priority: Literal["high", "normal"] | None = None
    ttl: int | None = Field(None, ge=0, le=MAX_TTL)
    data: dict[str, PushValue] = Field(default_factory=dict)  # small ids only: the app fetches content
    # "offline": only to users with no live stream anywhere, decided by the worker at delivery time
    when: Literal["always", "offline"] | None = None
    # APNs interruption level of an alert; an event marked critical gets "time-sensitive"
    interruption_level: Literal["passive", "active", "time-sensitive"] | None = None

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
    def _small_ids(cls, data: dict[str, PushValue]) -> dict[str, PushValue]:
        if len(data) > MAX_DATA_ENTRIES:
            raise ValueError(f"at most {MAX_DATA_ENTRIES} entries (payloads carry ids, not content)")
        for key, value in data.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", key):
                raise ValueError(f"key {key!r} must be 1-64 letters, digits, '_', '.', '-'")
            if reserved_key(key):
                raise ValueError(f"key {key!r} is reserved by a push provider")
            items = value if isinstance(value, list) else [value]
            if len(items) > MAX_LIST_ITEMS:
                raise ValueError(f"list {key!r} has more than {MAX_LIST_ITEMS} items")
            if any(isinstance(item, str) and len(item) > 256 for item in items):
                raise ValueError(f"value of {key!r} is longer than 256 characters")
        return data

    @model_validator(mode="after")
    def _alert_has_text(self) -> PushSpec:
        if self.mode == "alert" and not (self.title or self.body):
            raise ValueError("an alert push needs a title or a body")
        return self


def _whole_ms(seconds: float) -> float:
    # Windows are kept in whole milliseconds: a nonzero window shorter than that would round to none at all.
    if 0 < seconds < 0.001:
        raise ValueError("a debounce window is 0 (off) or at least 0.001 s")
    return seconds


Window = Annotated[float, Field(ge=0, le=MAX_WINDOW), AfterValidator(_whole_ms)]


class DebounceSpec(BaseModel):
    """Debounce windows of one event (seconds; 0 = off for this event, unset = the event type's default).

    The first event of a quiet period is delivered at once; later ones within `stream`/`push` seconds are
    merged and delivered once when the window closes. `max_wait` lets a window slide (each event extends it
    by its length) but never keeps an event waiting longer than `max_wait`; a transport whose window is at
    least `max_wait` keeps a fixed window. `key` groups events into one window instead of their scope.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: ScopeName | None = None
    stream: Window | None = None
    push: Window | None = None
    max_wait: Window | None = None


CATEGORY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/\-]{0,63}$"
_LINK = re.compile(r"^(https?://[^\s/?#]+|/(?!/))[^\s\x00-\x1f\x7f]*$")


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _link(value: str) -> str:
    # Shown as a link by clients (the dashboard, an app's inbox): no javascript: or data: URLs.
    if not _LINK.fullmatch(value):
        raise ValueError("must be an http(s) URL or a path starting with /")
    return value


Link = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_link)]


class InboxSpec(BaseModel):
    """What an event kept in its recipients' inboxes shows. `inbox: true` is this with the push spec's title
    and body; a title or body given here wins over the push's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: Annotated[str, StringConstraints(max_length=256), AfterValidator(_no_nul)] | None = None
    body: Annotated[str, StringConstraints(max_length=4096), AfterValidator(_no_nul)] | None = None
    url: Link | None = None  # where the item leads when opened
    icon: Link | None = None
    category: Annotated[str, StringConstraints(pattern=CATEGORY_PATTERN)] | None = None  # counted apart
    data: dict[str, Any] | None = None  # a small JSON object for the app (at most TIDINGS_MAX_DATA_BYTES)

    @field_validator("data")
    @classmethod
    def _small(cls, data: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        if data is not None:
            _check_size(data, _limits(info).max_data_bytes)
        return data


PushFitCheck = Callable[[PushSpec, str, Mapping[str, Any]], None]
"""Raises ValueError (naming the provider and sizes) when an event's push payload cannot fit a provider."""


def _inbox_shorthand(value: Any) -> Any:
    if value is True:
        return {}
    if value is False:
        return None
    if value is None or isinstance(value, dict | InboxSpec):
        return value
    raise ValueError("inbox must be true, false or an object")


@dataclass(frozen=True, slots=True)
class Limits:
    """What a publisher may not exceed; passed as the validation context (`{"limits": Limits(...)}`)."""

    max_data_bytes: int = 4096
    max_audience: int = 1000
    push_fits: PushFitCheck | None = None  # filled in by the hub from the push layer


def _check_size(data: dict[str, Any], limit: int) -> None:
    try:
        size = len(orjson.dumps(data))
    except TypeError as exc:  # only reachable from Python callers passing non-JSON values
        raise ValueError(f"data is not JSON-serialisable: {exc}") from exc
    if size > limit:
        raise ValueError(f"data is {size} bytes once encoded; the limit is {limit}")


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
    # Delivery policy (tidings.policy): what preferences mute (default: the type), a security alert that goes
    # through mutes, quiet hours and debounce, and this event's debounce windows.
    scope: ScopeName | None = None
    critical: bool = False
    debounce: DebounceSpec | None = None

    # Kept in the recipients' inboxes (tidings.inbox): `true` (the push spec's title and body) or an object.
    # After validation: an InboxSpec with its title and body filled in, or None.
    inbox: Annotated[
        InboxSpec | None, BeforeValidator(_inbox_shorthand, json_schema_input_type=bool | InboxSpec | None)
    ] = None

    @field_validator("data")
    @classmethod
    def _small(cls, data: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        _check_size(data, _limits(info).max_data_bytes)
        return data

    @field_validator("inbox")
    @classmethod
    def _kept(cls, spec: InboxSpec | None, info: ValidationInfo) -> InboxSpec | None:
        if spec is None:
            return None
        push = info.data.get("push")
        title = spec.title if spec.title is not None else getattr(push, "title", None)
        body = spec.body if spec.body is not None else getattr(push, "body", None)
        if not (title or body):
            raise ValueError(
                "an inbox item needs a title or a body: give inbox.title, or a push with a title"
            )
        return spec.model_copy(update={"title": title or "", "body": body or ""})

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
        push = self.push
        if push is not None and self.critical and push.mode == "alert" and push.interruption_level is None:
            # before the size check: the level is part of the APNs payload that must fit
            self.push = push = push.model_copy(update={"interruption_level": "time-sensitive"})
        check = _limits(info).push_fits
        if push is not None and check is not None:
            check(push, self.type, self.data)
        return self

    @property
    def effective_scope(self) -> str:
        """What preferences match this event by: its scope, else its type."""
        return self.scope or self.type

    def public(self, now: datetime) -> dict[str, object]:
        """What every recipient sees (without the id, which the bus assigns); `scope` and `critical` only when
        given, so events without policy look exactly as before."""
        out: dict[str, object] = {
            "type": self.type, "data": self.data, "occurred_at": iso_utc(self.occurred_at or now)
        }  # fmt: skip
        if self.scope is not None:
            out["scope"] = self.scope
        if self.critical:
            out["critical"] = True
        return out


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
