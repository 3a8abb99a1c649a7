"""Event validation (what publishers may send) and encoding (what streams carry)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from pydantic import ValidationError

from support import parse_frames
from tidings.events import Envelope, EventIn, Limits, encode_message_tail, sse_frame


def validate(raw: dict[str, object], **limits: int) -> EventIn:
    return EventIn.model_validate(raw, context={"limits": Limits(**limits)})


def error_locs(raw: dict[str, object], **limits: int) -> list[tuple[object, ...]]:
    with pytest.raises(ValidationError) as info:
        validate(raw, **limits)
    return [tuple(e["loc"]) for e in info.value.errors()]


GOOD = {"type": "order.created", "data": {"order_id": 7}, "to": {"roles": ["admin"]}}


def test_a_valid_event_keeps_its_fields() -> None:
    event = validate(GOOD)
    assert event.type == "order.created" and event.to.roles == ["admin"] and event.data == {"order_id": 7}


@pytest.mark.parametrize(
    "bad_type", ["Order.Created", "order", "order..created", ".order", "order created", "a" * 200]
)
def test_type_must_be_dotted_lowercase(bad_type: str) -> None:
    assert error_locs({**GOOD, "type": bad_type}) == [("type",)]


def test_unknown_fields_are_named() -> None:
    assert ("id",) in error_locs({**GOOD, "id": "1-0"})
    assert ("to", "groups") in error_locs({**GOOD, "to": {"groups": ["x"]}})


def test_empty_audience_is_rejected() -> None:
    assert error_locs({**GOOD, "to": {}}) == [("to",)]
    assert error_locs({**GOOD, "to": {"users": [], "broadcast": False}}) == [("to",)]


def test_oversized_data_is_rejected_with_its_size() -> None:
    with pytest.raises(ValidationError, match="the limit is 64"):
        validate({**GOOD, "data": {"blob": "x" * 100}}, max_data_bytes=64)
    assert error_locs({**GOOD, "data": {"blob": "x" * 100}}, max_data_bytes=64) == [("data",)]


def test_audience_names_cannot_hide_separators() -> None:
    assert error_locs({**GOOD, "to": {"users": ["a b"]}}) == [("to", "users", 0)]
    assert error_locs({**GOOD, "to": {"topics": ["a,b"]}}) == [("to", "topics", 0)]


def test_audience_size_is_bounded() -> None:
    assert error_locs({**GOOD, "to": {"users": [f"u{i}" for i in range(11)]}}, max_audience=10) == [
        ("to", "users")
    ]


def test_naive_occurred_at_is_rejected() -> None:
    assert error_locs({**GOOD, "occurred_at": "2026-01-01T00:00:00"}) == [("occurred_at",)]


def test_envelope_frame_is_one_valid_sse_event() -> None:
    event = validate({**GOOD, "data": {"note": "line one\nline two\r\n", "order_id": 7}})
    tail = encode_message_tail(event, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    envelope = Envelope.parse(b"17-3\n" + tail)
    [frame] = parse_frames(envelope.frame.decode())
    assert (frame.id, frame.event) == ("17-3", "order.created")
    assert frame.json() == {
        "id": "17-3",
        "type": "order.created",
        "data": {"note": "line one\nline two\r\n", "order_id": 7},
        "occurred_at": "2026-01-02T03:04:05.000Z",
    }
    assert envelope.channels == ("r:admin",)


def test_broadcast_uses_the_single_broadcast_channel() -> None:
    event = validate({**GOOD, "to": {"broadcast": True, "users": ["a"]}})
    assert event.to.channels() == ("*",)


@pytest.mark.parametrize("text", ["one", "one\ntwo", "a\r\nb\rc", "", "trailing\n"])
def test_sse_frame_splits_lines_per_whatwg(text: str) -> None:
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    [frame] = parse_frames(sse_frame(text, event="note", event_id="1-0").decode())
    assert (frame.data, frame.event, frame.id) == (expected, "note", "1-0")


def test_sse_frame_refuses_line_breaks_in_fields() -> None:
    with pytest.raises(ValueError):
        sse_frame("x", event="a\nb")


def test_publish_tail_is_compact_json() -> None:
    tail = encode_message_tail(validate(GOOD), datetime(2026, 1, 1, tzinfo=UTC))
    kind, channels, body = tail.split(b"\n", 2)
    assert (kind, channels) == (b"order.created", b"r:admin")
    assert orjson.loads(body)["data"] == {"order_id": 7}
