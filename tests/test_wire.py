"""The wire format: bus messages and the SSE bytes every stream carries, encoded once."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from support import parse_frames
from tidings.events import EventIn
from tidings.wire import Envelope, encode_tail, http_chunk, parse_id, preamble, sse_frame, with_id

GOOD = {"type": "order.created", "data": {"order_id": 7}, "to": {"roles": ["admin"]}}


def tail_of(raw: dict[str, object], now: datetime) -> bytes:
    event = EventIn.model_validate(raw)
    return encode_tail(event.type, event.to.channels(), event.public(now))


def test_envelope_frame_is_one_valid_sse_event() -> None:
    raw = {**GOOD, "data": {"note": "line one\nline two\r\n", "order_id": 7}}
    tail = tail_of(raw, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    envelope = Envelope.parse(with_id("17-3", tail), lambda: 42.0)
    [frame] = parse_frames(envelope.frame.decode())
    assert (frame.id, frame.event) == ("17-3", "order.created")
    assert frame.json() == {
        "id": "17-3",
        "type": "order.created",
        "data": {"note": "line one\nline two\r\n", "order_id": 7},
        "occurred_at": "2026-01-02T03:04:05.000Z",
    }
    assert envelope.channels == ("r:admin",)
    assert envelope.received_at == 42.0  # stamped by the injected clock, not wall time
    assert envelope.chunk == http_chunk(envelope.frame)


@pytest.mark.parametrize("text", ["one", "one\ntwo", "a\r\nb\rc", "", "trailing\n"])
def test_sse_frame_splits_lines_per_whatwg(text: str) -> None:
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    [frame] = parse_frames(sse_frame(text, event="note", event_id="1-0").decode())
    assert (frame.data, frame.event, frame.id) == (expected, "note", "1-0")


def test_sse_frame_refuses_line_breaks_in_fields() -> None:
    with pytest.raises(ValueError):
        sse_frame("x", event="a\nb")


def test_publish_tail_is_compact_json() -> None:
    tail = tail_of(GOOD, datetime(2026, 1, 1, tzinfo=UTC))
    kind, channels, body = tail.split(b"\n", 2)
    assert (kind, channels) == (b"order.created", b"r:admin")
    assert orjson.loads(body)["data"] == {"order_id": 7}


def test_preamble_sets_the_retry_delay_and_flushes_proxies() -> None:
    [frame] = parse_frames(preamble(2500).decode())
    assert frame.retry == 2500 and frame.comments == ["ok"]


@pytest.mark.parametrize("bad", ["", "1", "1-", "-1", "a-1", "1-2-3", "9" * 50 + "-0"])
def test_parse_id_refuses_what_the_bus_never_issues(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_id(bad)
