"""Which debounce window an event gets: its own fields over its type's default, off unless asked, never for
critical events; keys that cannot collide; coalesced push payloads that still fit."""

from __future__ import annotations

from typing import Any

import orjson

from tidings.config import DebounceDefault
from tidings.events import EventIn, PushSpec
from tidings.policy.windows import (
    Window,
    audience_of,
    parse_defaults,
    parse_key,
    push_key,
    stream_key,
    window_of,
)
from tidings.push.payloads import MAX_COLLAPSE_ID, collapse_id, ensure_push_fits, fit_push

DEFAULTS = parse_defaults({"tasks.changed": {"stream": 1, "push": 60, "max_wait": 5}})


def event(**fields: Any) -> EventIn:
    return EventIn.model_validate({"type": "tasks.changed", "to": {"users": ["b", "a"]}, **fields})


def test_off_unless_the_event_or_its_type_asks() -> None:
    assert window_of(event(), {}, "stream") is None
    assert (
        window_of(EventIn.model_validate({"type": "order.created", "to": {"users": ["a"]}}), DEFAULTS, "push")
        is None
    )
    assert window_of(event(debounce={"stream": 2}), {}, "stream") == Window(2, None, "tasks.changed")
    assert window_of(event(debounce={"stream": 2}), {}, "push") is None


def test_the_event_overrides_its_types_default() -> None:
    assert window_of(event(), DEFAULTS, "stream") == Window(
        1, 5, "tasks.changed"
    )  # max_wait > window: slides
    assert window_of(event(), DEFAULTS, "push") == Window(
        60, None, "tasks.changed"
    )  # max_wait < window: fixed
    assert window_of(event(debounce={"stream": 0}), DEFAULTS, "stream") is None
    own = window_of(event(scope="list:7", debounce={"key": "sync", "max_wait": 3}), DEFAULTS, "stream")
    assert own == Window(1, 3, "sync")
    assert window_of(event(scope="list:7"), DEFAULTS, "stream") == Window(1, 5, "list:7")
    assert window_of(event(critical=True), DEFAULTS, "stream") is None


def test_keys_are_canonical_and_cannot_collide() -> None:
    window = Window(1, None, "tasks.changed")
    one = stream_key(event(), window)
    other = stream_key(EventIn.model_validate({"type": "tasks.changed", "to": {"users": ["a", "b"]}}), window)
    assert one == other  # the same audience in another order is the same window
    parts = parse_key(one)
    assert audience_of(parts[4]).users == ["a", "b"]
    tricky = push_key("tasks.changed", 'a","b', None, "u")
    assert (
        parse_key(tricky)
        == ["p", "tasks.changed", 'a","b', None, "u"]
        != parse_key(push_key("tasks.changed", "a", "b", "u"))
    )


def test_hub_defaults_are_validated() -> None:
    assert parse_defaults({"x.y": DebounceDefault(push=3)})["x.y"].push == 3


def test_collapse_ids_fit_apns() -> None:
    assert collapse_id("conversation:42") == "conversation:42"
    long = collapse_id("c" * 200)
    assert len(long.encode()) <= MAX_COLLAPSE_ID and long == collapse_id("c" * 200) != collapse_id("c" * 201)


def test_a_merged_push_that_outgrew_the_limits_is_cut_to_its_newest_ids() -> None:
    ids = [f"task-{n:04d}-{'x' * 30}" for n in range(100)]
    spec = PushSpec.model_validate({"mode": "silent", "data": {"ids": ids, "coalesced": 100}})
    fitted = fit_push(spec, "tasks.changed", {})
    ensure_push_fits(fitted, "tasks.changed", {})
    kept = fitted.data["ids"]
    assert isinstance(kept, list) and 0 < len(kept) < 100 and kept == ids[-len(kept) :]
    assert fitted.data["coalesced"] == 100
    assert len(orjson.dumps(fitted.data)) < len(orjson.dumps(spec.data))


def test_a_bad_hub_default_names_itself(tmp_path: Any) -> None:
    import pytest

    from tidings import Hub, Settings
    from tidings.errors import ConfigError

    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match=r"Hub\(debounce=\.\.\.\)"):
        Hub(settings, debounce={"tasks.changed": {"stream": -1}})
