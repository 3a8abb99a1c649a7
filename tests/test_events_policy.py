"""The event model's policy fields: scope, critical, push `when`, per-event debounce; validation names the
field; a critical alert is time-sensitive on APNs and still has to fit; the bus message carries scope and
critical on its first line and events without policy encode exactly as before."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from pydantic import ValidationError

from tidings.events import EventIn, Limits, PushSpec
from tidings.push.base import Notification
from tidings.push.payloads import apns_payload, ensure_push_fits
from tidings.wire import Envelope, encode_tail, tail_channels, with_id

GOOD = {"type": "message.new", "data": {"conversation_id": "42"}, "to": {"users": ["ann"]}}
LIMITS = Limits(push_fits=ensure_push_fits)


def validate(raw: dict[str, object]) -> EventIn:
    return EventIn.model_validate(raw, context={"limits": LIMITS})


def error_fields(raw: dict[str, object]) -> list[tuple[object, ...]]:
    with pytest.raises(ValidationError) as info:
        validate(raw)
    return [tuple(e["loc"]) for e in info.value.errors()]


def test_policy_fields_default_to_nothing() -> None:
    event = validate(GOOD)
    assert (event.scope, event.critical, event.debounce, event.effective_scope) == (
        None,
        False,
        None,
        "message.new",
    )
    assert set(event.public(datetime.now(UTC))) == {
        "type", "data", "occurred_at",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({**GOOD, "scope": "has space"}, ("scope",)),
        ({**GOOD, "scope": "-leading"}, ("scope",)),
        ({**GOOD, "critical": "very"}, ("critical",)),
        ({**GOOD, "push": {"mode": "alert", "title": "x", "when": "later"}}, ("push", "when")),
        ({**GOOD, "debounce": {"stream": -1}}, ("debounce", "stream")),
        ({**GOOD, "debounce": {"push": 86_401}}, ("debounce", "push")),
        ({**GOOD, "debounce": {"stream": 1e-45}}, ("debounce", "stream")),  # rounds to no window at all
        ({**GOOD, "debounce": {"max_wait": 0.0004}}, ("debounce", "max_wait")),
        ({**GOOD, "debounce": {"every": 1}}, ("debounce", "every")),
        ({**GOOD, "push": {"mode": "silent", "data": {"ids": list(range(101))}}}, ("push", "data")),
    ],
)
def test_bad_policy_fields_are_named(raw: dict[str, object], field: tuple[object, ...]) -> None:
    assert field in error_fields(raw)


def test_a_critical_alert_is_time_sensitive_and_must_still_fit() -> None:
    event = validate(
        {**GOOD, "critical": True, "push": {"mode": "alert", "title": "Sign-in from a new device"}}
    )
    assert event.push is not None and event.push.interruption_level == "time-sensitive"
    silent = validate({**GOOD, "critical": True, "push": "silent"})
    assert silent.push is not None and silent.push.interruption_level is None  # silent pushes have no level
    # the size check sees the spec APNs will get (with its level), and the APNs payload carries it
    checked: list[PushSpec] = []
    raw = {**GOOD, "critical": True, "push": {"mode": "alert", "title": "t"}}
    EventIn.model_validate(raw, context={"limits": Limits(push_fits=lambda spec, *_: checked.append(spec))})
    assert [spec.interruption_level for spec in checked] == ["time-sensitive"]
    note = Notification(event_id="1-0", event_type="message.new", spec=checked[0], data={})
    assert orjson.loads(apns_payload(note))["aps"]["interruption-level"] == "time-sensitive"


def test_the_bus_message_carries_scope_and_critical_on_its_first_line() -> None:
    tail = encode_tail(
        "message.new", ["u:ann"], {"type": "message.new"}, scope="conversation:42", critical=True
    )
    assert tail.split(b"\n", 1)[0] == b"message.new conversation:42 !"
    envelope = Envelope.parse(with_id("1-0", tail), lambda: 0.0)
    assert (envelope.type, envelope.scope, envelope.critical) == ("message.new", "conversation:42", True)
    assert b"event: message.new\n" in envelope.frame  # the SSE event name is the type alone
    plain = encode_tail("message.new", ["u:ann"], {"type": "message.new"}, scope="message.new")
    assert plain.split(b"\n", 1)[0] == b"message.new"  # a scope equal to the type is not repeated
    parsed = Envelope.parse(with_id("1-1", plain), lambda: 0.0)
    assert (parsed.scope, parsed.critical) == ("message.new", False)


def test_an_event_addressed_to_nobody_has_no_channels() -> None:
    assert tail_channels(encode_tail("tasks.changed", [], {})) == []
