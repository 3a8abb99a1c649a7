"""decide(): every branch, in order of precedence; the stream-side predicates."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tidings.policy.decide import (
    SEND,
    Action,
    Decision,
    PushPolicy,
    Reason,
    decide,
    stream_allowed,
    stream_allows,
    stream_muted_scopes,
)
from tidings.policy.preferences import Preferences, parse_preferences


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


NOON = at("2027-01-15 12:00")  # not quiet under NIGHT
NIGHT_NOW = at("2027-01-15 23:00")  # quiet under NIGHT (UTC)
MORNING = at("2027-01-16 07:00")
MSG = PushPolicy.of("message.new", "conversation:42")
NIGHT = {"start": "22:00", "end": "07:00", "timezone": "UTC"}


def prefs(**body: Any) -> Preferences:
    return parse_preferences(body)


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def test_no_preferences_sends() -> None:
    assert decide(MSG, None, online=False, now=NOON) is SEND
    assert decide(MSG, Preferences(), online=True, now=NIGHT_NOW) is SEND


def test_offline_only_push_skips_an_online_user_for_presence() -> None:
    offline_only = PushPolicy.of("message.new", when="offline")
    assert decide(offline_only, None, online=True, now=NOON) == Decision(Action.SKIP, Reason.PRESENCE)
    assert decide(offline_only, None, online=False, now=NOON) is SEND
    critical = PushPolicy.of("security.alert", when="offline", critical=True)
    assert decide(critical, None, online=True, now=NOON).reason is Reason.PRESENCE  # critical is not presence


def test_push_off_skips_even_critical() -> None:
    off = prefs(push=False)
    assert decide(MSG, off, online=False, now=NOON) == Decision(Action.SKIP, Reason.PUSH_OFF)
    assert (
        decide(PushPolicy.of("security.alert", critical=True), off, online=False, now=NOON).reason
        is Reason.PUSH_OFF
    )
    assert decide(MSG, prefs(push=True), online=False, now=NOON) is SEND


@pytest.mark.parametrize("scope", ["conversation:42", "message.new"])  # the event's scope or its type
def test_scope_push_off_skips(scope: str) -> None:
    p = prefs(scopes={scope: {"push": False}})
    assert decide(MSG, p, online=False, now=NOON) == Decision(Action.SKIP, Reason.SCOPE_PUSH_OFF)
    assert decide(PushPolicy.of("message.new", "conversation:7"), prefs(scopes={"conversation:42": {"push": False}}),
                  online=False, now=NOON) is SEND  # fmt: skip


@pytest.mark.parametrize("scope", ["conversation:42", "message.new"])
def test_muted_scope_skips_unless_critical(scope: str) -> None:
    p = prefs(scopes={scope: {"muted": True}})
    assert decide(MSG, p, online=False, now=NOON) == Decision(Action.SKIP, Reason.MUTED)
    critical = PushPolicy.of("message.new", "conversation:42", critical=True)
    assert decide(critical, p, online=False, now=NOON) is SEND


def test_mute_until_ends_by_itself() -> None:
    p = prefs(scopes={"conversation:42": {"muted_until": iso(NOON + 8 * 3600)}})
    assert decide(MSG, p, online=False, now=NOON).reason is Reason.MUTED
    assert decide(MSG, p, online=False, now=NOON + 8 * 3600 - 0.001).reason is Reason.MUTED
    assert decide(MSG, p, online=False, now=NOON + 8 * 3600) is SEND  # a past until is no mute


def test_scope_stream_off_does_not_stop_pushes() -> None:
    assert decide(MSG, prefs(scopes={"conversation:42": {"stream": False}}), online=False, now=NOON) is SEND


def test_quiet_hours_hold_an_alert_until_they_end() -> None:
    p = prefs(quiet_hours=NIGHT)
    assert decide(MSG, p, online=False, now=NIGHT_NOW) == Decision(Action.HOLD, Reason.QUIET_HOURS, MORNING)
    assert decide(MSG, p, online=False, now=NOON) is SEND
    assert decide(MSG, p, online=False, now=MORNING) is SEND


def test_quiet_hours_in_drop_mode_drop() -> None:
    p = prefs(quiet_hours={**NIGHT, "mode": "drop"})
    assert decide(MSG, p, online=False, now=NIGHT_NOW) == Decision(Action.DROP, Reason.QUIET_HOURS_DROP)


def test_silent_and_critical_pushes_go_during_quiet_hours() -> None:
    p = prefs(quiet_hours=NIGHT)
    assert decide(PushPolicy.of("tasks.changed", mode="silent"), p, online=False, now=NIGHT_NOW) is SEND
    assert decide(PushPolicy.of("security.alert", critical=True), p, online=False, now=NIGHT_NOW) is SEND


def test_quiet_hours_use_the_device_zone_when_they_name_none() -> None:
    p = prefs(quiet_hours={"start": "22:00", "end": "07:00"}).with_device_timezone("Asia/Tokyo")  # UTC+9
    tokyo_eleven_pm = at("2027-01-15 14:00")
    expected = Decision(Action.HOLD, Reason.QUIET_HOURS, at("2027-01-15 22:00"))
    assert decide(MSG, p, online=False, now=tokyo_eleven_pm) == expected
    assert decide(MSG, p, online=False, now=NIGHT_NOW) is SEND  # 08:00 in Tokyo


def test_precedence_names_the_most_fundamental_reason() -> None:
    everything = prefs(
        push=False, quiet_hours=NIGHT, scopes={"conversation:42": {"push": False, "muted": True}}
    )
    offline_only = PushPolicy.of("message.new", "conversation:42", when="offline")
    assert decide(offline_only, everything, online=True, now=NIGHT_NOW).reason is Reason.PRESENCE
    assert decide(MSG, everything, online=False, now=NIGHT_NOW).reason is Reason.PUSH_OFF
    scoped = prefs(quiet_hours=NIGHT, scopes={"conversation:42": {"push": False, "muted": True}})
    assert decide(MSG, scoped, online=False, now=NIGHT_NOW).reason is Reason.SCOPE_PUSH_OFF
    muted = prefs(quiet_hours=NIGHT, scopes={"conversation:42": {"muted": True}})
    assert decide(MSG, muted, online=False, now=NIGHT_NOW).reason is Reason.MUTED


def test_push_policy_scopes() -> None:
    assert PushPolicy.of("message.new").scopes == ("message.new",)
    assert PushPolicy.of("message.new", "message.new").scopes == ("message.new",)
    assert MSG.scopes == ("conversation:42", "message.new") and MSG.scope == "conversation:42"
    assert PushPolicy.of("tasks.changed", mode="silent").silent


def test_reasons_are_the_strings_the_log_records() -> None:
    assert {r.value for r in Reason} == {
        "presence", "push_off", "scope_push_off", "muted", "quiet_hours", "quiet_hours_drop", "quiet_hours_released",
    }  # fmt: skip


# --- streams ------------------------------------------------------------------------------------------------


def test_stream_muted_scopes_and_when_they_change() -> None:
    p = prefs(
        scopes={
            "conversation:1": {"muted": True},
            "conversation:2": {"muted_until": iso(NOON + 3600)},
            "conversation:3": {"muted_until": iso(NOON + 60)},
            "conversation:4": {"muted_until": iso(NOON - 60)},  # over
            "conversation:5": {"stream": False},
            "conversation:6": {"push": False},  # pushes only
        }
    )
    muted, changes = stream_muted_scopes(p, NOON)
    assert muted == {"conversation:1", "conversation:2", "conversation:3", "conversation:5"}
    assert changes == NOON + 60
    later, _ = stream_muted_scopes(p, NOON + 60)
    assert later == {"conversation:1", "conversation:2", "conversation:5"}
    assert stream_muted_scopes(None, NOON) == (frozenset(), None)
    assert stream_muted_scopes(prefs(scopes={"a": {"muted": True}}), NOON) == (frozenset({"a"}), None)


def test_stream_predicates() -> None:
    muted = frozenset({"conversation:42"})
    assert not stream_allows(muted, MSG.scopes)
    assert stream_allows(muted, MSG.scopes, critical=True)
    assert stream_allows(muted, ("conversation:7", "message.new"))
    assert stream_allows(frozenset(), MSG.scopes)
    p = prefs(scopes={"message.new": {"muted_until": iso(NOON + 60)}})
    assert not stream_allowed(p, MSG.scopes, NOON)
    assert stream_allowed(p, MSG.scopes, NOON + 60)
    assert stream_allowed(p, MSG.scopes, NOON, critical=True)
    assert not stream_allowed(prefs(scopes={"conversation:42": {"stream": False}}), MSG.scopes, NOON)
    assert stream_allowed(None, MSG.scopes, NOON)
