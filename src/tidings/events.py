"""Events: validation of what publishers send, and the one-time encoding of what streams carry.

An event travels the bus as one message, `<id>\\n<type>\\n<channels>\\n<json>`, where `<json>` is the public
event without its id (the id is assigned by the bus, atomically with its position in the order). Each process
turns a message into its SSE frame once (`Envelope.frame`) and writes those same bytes to every recipient.

Channels name audiences: `u:<user>`, `r:<role>`, `t:<topic>` and `*` (broadcast).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

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

from .push.spec import PushSpec, ensure_push_fits

BROADCAST = "*"
TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
NAME_PATTERN = r"^[^\s,\x00-\x1f\x7f]+$"  # no whitespace, commas or control characters: names join into lists

Name = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=NAME_PATTERN)]


@dataclass(frozen=True, slots=True)
class Limits:
    """Sizes a publisher may not exceed; passed as validation context."""

    max_data_bytes: int = 4096
    max_audience: int = 1000


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
        if self.broadcast:
            return (BROADCAST,)
        return (
            *(f"u:{user}" for user in self.users),
            *(f"r:{role}" for role in self.roles),
            *(f"t:{topic}" for topic in self.topics),
        )


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
        if value is not None and value.tzinfo is None:
            raise ValueError("occurred_at needs a time zone (e.g. a trailing Z)")
        return value

    @model_validator(mode="after")
    def _push_fits(self) -> EventIn:
        if self.push is not None:
            ensure_push_fits(self.push, self.type, self.data)
        return self


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode_message_tail(event: EventIn, now: datetime) -> bytes:
    """`<type>\\n<channels>\\n<json>`: all of a bus message but the id, encoded once at publish."""
    public = {"type": event.type, "data": event.data, "occurred_at": iso_utc(event.occurred_at or now)}
    channels = " ".join(event.to.channels())
    return b"%s\n%s\n%s" % (event.type.encode(), channels.encode(), orjson.dumps(public))


@dataclass(frozen=True, slots=True)
class Envelope:
    """An event as a process received it from the bus, with its SSE frame encoded once."""

    id: str
    type: str
    channels: tuple[str, ...]
    frame: bytes
    chunk: bytes  # the frame as one HTTP/1.1 chunk, for streams written straight to their socket
    message: bytes
    received_at: float

    @classmethod
    def parse(cls, message: bytes) -> Envelope:
        event_id, event_type, channels, public = message.split(b"\n", 3)
        # The JSON has no raw newlines (orjson escapes them), so one `data:` line is valid WHATWG framing.
        frame = b'id: %s\nevent: %s\ndata: {"id":"%s",%s\n\n' % (event_id, event_type, event_id, public[1:])
        channel_list = tuple(channels.decode().split(" "))
        return cls(
            event_id.decode(),
            event_type.decode(),
            channel_list,
            frame,
            http_chunk(frame),
            message,
            time.time(),
        )


def http_chunk(data: bytes) -> bytes:
    """`data` framed as one chunk of an HTTP/1.1 chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def sse_frame(
    data: str, *, event: str | None = None, event_id: str | None = None, retry: int | None = None
) -> bytes:
    """A WHATWG-conformant frame for arbitrary text: one `data:` line per line of `data`."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {_single_line(event_id)}")
    if event is not None:
        lines.append(f"event: {_single_line(event)}")
    if retry is not None:
        lines.append(f"retry: {int(retry)}")
    lines.extend(f"data: {line}" for line in _LINE_BREAK.split(data))
    return ("\n".join(lines) + "\n\n").encode()


def _single_line(value: str) -> str:
    if _LINE_BREAK.search(value) or "\x00" in value:
        raise ValueError("SSE field values cannot contain line breaks or NUL")
    return value


def frames_of(envelopes: Iterable[Envelope]) -> bytes:
    return b"".join(envelope.frame for envelope in envelopes)
