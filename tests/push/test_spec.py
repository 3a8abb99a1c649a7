"""PushSpec validation, default payload content, and the publish-time size check."""

from __future__ import annotations

import pytest
from push_helpers import note
from pydantic import ValidationError

from tidings.events import PushSpec
from tidings.push import payloads
from tidings.push.base import parse_retry_after
from tidings.push.payloads import ensure_push_fits


def test_string_shorthand() -> None:
    assert PushSpec.model_validate("silent").mode == "silent"
    assert PushSpec.model_validate({"mode": "alert", "title": "x"}).title == "x"
    with pytest.raises(ValidationError, match="silent"):
        PushSpec.model_validate("loud")


def test_alert_needs_text_and_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="title or a body"):
        PushSpec.model_validate("alert")
    with pytest.raises(ValidationError):
        PushSpec.model_validate({"mode": "silent", "colour": "red"})
    with pytest.raises(ValidationError):
        PushSpec.model_validate({"ttl": 2419201})


@pytest.mark.parametrize("key", ["aps", "from", "google_id", "gcm.x", "notification"])
def test_provider_reserved_data_keys_are_refused(key: str) -> None:
    with pytest.raises(ValidationError, match="reserved"):
        PushSpec.model_validate({"data": {key: "1"}})


def test_default_payload_carries_type_event_id_and_the_events_ids_only() -> None:
    data = {"order_id": "o-1", "id": 7, "title": "secret", "customer": {"user_id": "u"}, "google_id": "g"}
    assert payloads.custom_data(note("silent", data)) == {
        "type": "order.created",
        "event_id": "1700000000000-0",
        "order_id": "o-1",
        "id": 7,
    }
    assert payloads.custom_data(note({"data": {"task_id": 3}}, data)) == {
        "type": "order.created",
        "event_id": "1700000000000-0",
        "task_id": 3,
    }


def test_oversize_payload_is_refused_naming_provider_and_sizes() -> None:
    ensure_push_fits(PushSpec.model_validate("silent"), "order.created", {"order_id": "x" * 200})
    big = PushSpec.model_validate(
        {
            "mode": "alert",
            "title": "t" * 256,
            "body": "b" * 2048,
            "data": {f"k{i}_id": "v" * 200 for i in range(8)},
        }
    )
    with pytest.raises(ValueError, match=r"\d+ bytes for (APNs|FCM|Web Push), over its limit of \d+ bytes"):
        ensure_push_fits(big, "order.created", {})


def test_web_push_has_the_tightest_limit_3993_bytes_of_plaintext() -> None:
    def spec(pad: int) -> PushSpec:
        data = {f"k{i}_id": "v" * 256 for i in range(6)} | {"pad_id": "v" * pad}
        return PushSpec.model_validate({"mode": "alert", "title": "t", "body": "b" * 2048, "data": data})

    def size(pad: int) -> int:
        return len(payloads.webpush_plaintext(note(spec(pad), {}, event_id="9" * 48)))

    pad = 4000 - size(0)
    assert size(pad) == 4000
    assert len(payloads.apns_payload(note(spec(pad), {}, event_id="9" * 48))) <= 4096
    assert payloads.fcm_payload_size(note(spec(pad), {}, event_id="9" * 48)) <= 4096
    with pytest.raises(ValueError, match="4000 bytes for Web Push, over its limit of 3993"):
        ensure_push_fits(spec(pad), "order.created", {})
    ensure_push_fits(spec(pad - 7), "order.created", {})


def test_retry_after_parses_seconds_and_http_dates() -> None:
    assert parse_retry_after("120", 0) == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == 10
    assert parse_retry_after("soon", 0) is None and parse_retry_after(None, 0) is None
