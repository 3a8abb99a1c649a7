"""Every byte tidings puts on a stream, and the bus message codec — in one place.

A bus message is `<id>\\n<type>\\n<channels>\\n<json>`: `<json>` is the public event without its id (the bus
assigns the id atomically with the event's position in the order); `<channels>` names the audience, space
separated: `u:<user>`, `r:<role>`, `t:<topic>` and `*` (broadcast); an empty line is an event addressed to
nobody (a debounced event recorded on the bus, see streams/debounce.py). Publishers encode the tail
(everything but the id) once; each process turns a message into its SSE frame once (`Envelope`) and writes
those same bytes to every recipient.

The type line may carry the event's delivery policy after the type, space separated: its scope when it is not
the type (`message.new conversation:42`) and `!` when it is critical. Routers filter muted scopes by these
without parsing the JSON; a line without a space (every event without policy) costs one byte search.

SSE framing follows the WHATWG EventSource rules: one `data:` line per line of text, `id:`/`event:` values
without line breaks or NUL, a blank line ending each frame; comments (`:...`) keep proxies from timing out.

This module sits beside the event model at the bottom of the package so that the bus (which parses ids and
channels) and the streams (which write frames) share it without importing each other.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from .clock import Clock

BROADCAST = "*"
CONTROL = "#ctl"  # the channel of control messages between processes (revocations); no stream holds it
# the control message a bus delivers in place of events it lost: every stream of the process resets
GAP = "tidings.gap"

KEEPALIVE = b":keepalive\n\n"
STREAM_CONTENT_TYPE = b"text/event-stream; charset=utf-8"

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


# --- stream framing -----------------------------------------------------------------------------------------


def stream_headers(reconnect_delay_ms: int) -> list[tuple[bytes, bytes]]:
    """The response headers of every stream (ASGI form)."""
    return [
        (b"content-type", STREAM_CONTENT_TYPE),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),  # nginx: do not buffer this response
        (b"x-reconnect-delay", str(reconnect_delay_ms).encode()),
    ]


def preamble(reconnect_delay_ms: int) -> bytes:
    """The first bytes of every stream: the reconnect delay, and a comment that flushes proxies."""
    return b"retry: %d\n:ok\n\n" % reconnect_delay_ms


def sse_frame(
    data: str, *, event: str | None = None, event_id: str | None = None, retry: int | None = None
) -> bytes:
    """A frame for arbitrary text: one `data:` line per line of `data`."""
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


HISTORY_UNAVAILABLE = "history_unavailable"  # a resume the history cannot cover
EVENTS_LOST = "events_lost"  # a live stream whose process lost events its channels' history cannot cover


def reset_frame(reason: str = HISTORY_UNAVAILABLE) -> bytes:
    """Told to a client whose gap cannot be filled: refetch your state. `history_unavailable` for a resume the
    history cannot cover; `events_lost` for a live stream whose process lost events it could not recover."""
    return sse_frame(orjson.dumps({"reason": reason}).decode(), event="reset")


def shutdown_frame(retry_ms: int) -> bytes:
    """Told to every stream of a stopping process: reconnect (elsewhere) after about `retry_ms`."""
    return sse_frame('{"reason":"server_shutdown"}', event="shutdown", retry=retry_ms)


def event_frame(event_id: bytes, event_type: bytes, public: bytes) -> bytes:
    """An event's frame; `public` is the JSON object without its id, which is spliced in first.

    orjson escapes newlines inside strings, so the JSON is one line and one `data:` line is valid framing.
    """
    return b'id: %s\nevent: %s\ndata: {"id":"%s",%s\n\n' % (event_id, event_type, event_id, public[1:])


def http_chunk(data: bytes) -> bytes:
    """`data` framed as one chunk of an HTTP/1.1 chunked body (for streams written straight to a socket)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


# --- the bus message codec ----------------------------------------------------------------------------------


def encode_tail(
    event_type: str,
    channels: Sequence[str],
    public: dict[str, object],
    *,
    scope: str | None = None,
    critical: bool = False,
) -> bytes:
    """`<type>\\n<channels>\\n<json>`: all of a bus message but the id, encoded once at publish."""
    head = event_type
    if scope is not None and scope != event_type:
        head += " " + scope
    if critical:
        head += " !"
    return b"%s\n%s\n%s" % (head.encode(), " ".join(channels).encode(), orjson.dumps(public))


def tail_channels(tail: bytes) -> list[str]:
    """The channels of a message tail (none for an event addressed to nobody)."""
    line = tail.split(b"\n", 2)[1]
    return line.decode().split(" ") if line else []


def with_id(event_id: str | bytes, tail: bytes) -> bytes:
    """A whole bus message from its id and tail."""
    raw = event_id.encode() if isinstance(event_id, str) else event_id
    return b"%s\n%s" % (raw, tail)


def message_id(message: bytes) -> str:
    """The id of a bus message, without parsing the rest."""
    return message[: message.index(b"\n")].decode()


def parse_id(event_id: str) -> tuple[int, int]:
    """`<ms>-<seq>` → a tuple that sorts in publish order; ValueError for anything else."""
    ms, sep, seq = event_id.partition("-")
    if not sep or not ms.isdigit() or not seq.isdigit() or len(event_id) > 41:
        raise ValueError(f"not an event id: {event_id!r}")
    return int(ms), int(seq)


def control_message(kind: str, body: dict[str, object]) -> bytes:
    """A control message tail (`tidings.<kind>` on the control channel); every process receives it."""
    return encode_tail(f"tidings.{kind}", [CONTROL], body)


def gap_message(after: str, reason: str, since: str | None = None) -> bytes:
    """The whole bus message a bus delivers, in order, where it may have lost events: those after `since` (the
    last one it delivered; None: any before) up to `after`, from where it carries on live (`GAP`)."""
    body: dict[str, object] = {"reason": reason}
    if since is not None:
        body["since"] = since
    return with_id(after, encode_tail(GAP, [CONTROL], body))


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
    scope: str = ""  # what preferences mute it by: the event's scope, else its type
    critical: bool = False  # goes through mutes

    @classmethod
    def parse(cls, message: bytes, clock: Clock) -> Envelope:
        event_id, head, channels, public = message.split(b"\n", 3)
        scope, critical = None, False
        if b" " in head:  # policy marks after the type (see the module docstring)
            head, *marks = head.split(b" ")
            for mark in marks:
                if mark == b"!":
                    critical = True
                elif mark:
                    scope = mark.decode()
        event_type = head.decode()
        frame = event_frame(event_id, head, public)
        return cls(
            event_id.decode(),
            event_type,
            tuple(channels.decode().split(" ")),
            frame,
            http_chunk(frame),
            message,
            clock(),
            scope or event_type,
            critical,
        )

    @property
    def body(self) -> dict[str, object]:
        """The public JSON (control messages carry their arguments here)."""
        body: dict[str, object] = orjson.loads(self.message.split(b"\n", 3)[3])
        return body
