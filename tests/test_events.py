"""Event validation (what publishers may send) and encoding (what streams carry)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tidings.events import EventIn, Limits


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


def test_broadcast_uses_the_single_broadcast_channel() -> None:
    event = validate({**GOOD, "to": {"broadcast": True, "users": ["a"]}})
    assert event.to.channels() == ("*",)


def test_occurred_at_must_have_a_utc_equivalent() -> None:
    """Regression: 0001-01-01T00:00:00+14:00 is valid ISO 8601 but has no UTC time; it was a 500."""
    assert error_locs({**GOOD, "occurred_at": "0001-01-01T00:00:00+14:00"}) == [("occurred_at",)]
    assert error_locs({**GOOD, "occurred_at": "9999-12-31T23:59:59-14:00"}) == [("occurred_at",)]
