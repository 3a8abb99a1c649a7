"""The Preferences document: validation names the offending field, mute rules, merge-patch semantics."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

import pytest

from tidings.policy.preferences import (
    MAX_SCOPES,
    InvalidPreferences,
    Preferences,
    ScopePrefs,
    merge_patch,
    parse_preferences,
    parse_scope,
)

T0 = 1_800_000_000.0


def fields_of(data: Any) -> list[str]:
    with pytest.raises(InvalidPreferences) as caught:
        parse_preferences(data)
    return [err["field"] for err in caught.value.errors]


def test_a_full_document_round_trips_through_its_json_form() -> None:
    body = {
        "push": True,
        "quiet_hours": {
            "start": "22:00", "end": "07:30", "weekdays": ["mon", "fri"], "timezone": "Asia/Kathmandu",
            "mode": "drop",
        },
        "scopes": {
            "conversation:42": {"muted": True, "muted_until": "2027-01-15T16:00:00Z"},
            "message.new": {"push": False, "stream": True},
            "topic/with.slash_and-dash": {"stream": False},
        },
    }  # fmt: skip
    prefs = parse_preferences(body)
    assert prefs.document() == body
    assert parse_preferences(prefs.document()) == prefs
    assert prefs.quiet_hours is not None and prefs.quiet_hours.start == time(22, 0)


def test_everything_unset_is_an_empty_document() -> None:
    assert Preferences().document() == {}
    assert parse_preferences({}).document() == {}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"nope": 1}, "nope"),
        ({"push": "sometimes"}, "push"),
        ({"quiet_hours": {"start": "22:00"}}, "quiet_hours.end"),
        ({"quiet_hours": {"start": "24:00", "end": "07:00"}}, "quiet_hours.start"),
        ({"quiet_hours": {"start": "7:00", "end": "08:00"}}, "quiet_hours.start"),
        ({"quiet_hours": {"start": "22:00", "end": "22:00"}}, "quiet_hours.end"),
        (
            {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Mars/Olympus"}},
            "quiet_hours.timezone",
        ),
        (
            {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "../../etc/passwd"}},
            "quiet_hours.timezone",
        ),
        (
            {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "localtime"}},
            "quiet_hours.timezone",
        ),
        ({"quiet_hours": {"start": "22:00", "end": "07:00", "weekdays": []}}, "quiet_hours.weekdays"),
        (
            {"quiet_hours": {"start": "22:00", "end": "07:00", "weekdays": ["someday"]}},
            "quiet_hours.weekdays.0",
        ),
        ({"quiet_hours": {"start": "22:00", "end": "07:00", "mode": "later"}}, "quiet_hours.mode"),
        ({"quiet_hours": {"start": "22:00", "end": "07:00", "extra": 1}}, "quiet_hours.extra"),
        ({"scopes": {"has space": {"muted": True}}}, "scopes.has space.[key]"),
        ({"scopes": {"-leading": {"muted": True}}}, "scopes.-leading.[key]"),
        ({"scopes": {"x" * 129: {"muted": True}}}, f"scopes.{'x' * 129}.[key]"),
        ({"scopes": {"a": {"muted_until": "2027-01-15T16:00:00"}}}, "scopes.a.muted_until"),
        ({"scopes": {"a": {"loud": True}}}, "scopes.a.loud"),
        ({"scopes": {"a": {"push": "no"}}}, "scopes.a.push"),
    ],
)
def test_validation_errors_name_the_field(body: dict[str, Any], field: str) -> None:
    assert field in fields_of(body)


def test_scopes_are_bounded() -> None:
    many = {f"s{i}": {"muted": True} for i in range(MAX_SCOPES + 1)}
    assert fields_of({"scopes": many}) == ["scopes"]
    assert len(parse_preferences({"scopes": dict(list(many.items())[:MAX_SCOPES])}).scopes) == MAX_SCOPES


def test_weekdays_are_kept_in_week_order_without_duplicates() -> None:
    prefs = parse_preferences(
        {"quiet_hours": {"start": "22:00", "end": "07:00", "weekdays": ["sun", "mon", "sun"]}}
    )
    assert prefs.quiet_hours is not None and prefs.quiet_hours.weekdays == ("mon", "sun")


def test_muted_until_implies_muted_and_is_kept_in_utc() -> None:
    scope = parse_scope({"muted_until": "2027-01-15T18:00:00+02:00"})
    assert scope.muted is True
    assert scope.muted_until == datetime(2027, 1, 15, 16, tzinfo=UTC)
    assert scope.model_dump(mode="json", exclude_none=True) == {
        "muted": True,
        "muted_until": "2027-01-15T16:00:00Z",
    }


def test_a_mute_ends_at_muted_until_and_an_open_mute_never_ends() -> None:
    until = datetime.fromtimestamp(T0 + 8 * 3600, UTC)
    timed = ScopePrefs(muted=True, muted_until=until)
    assert timed.is_muted(T0) and timed.is_muted(T0 + 8 * 3600 - 1)
    assert not timed.is_muted(T0 + 8 * 3600)
    assert ScopePrefs(muted=True).is_muted(T0 + 10**9)
    assert not ScopePrefs(muted=False).is_muted(T0)
    assert not ScopePrefs(push=False).is_muted(T0)


def test_unmuting_clears_muted_until() -> None:
    assert parse_scope({"muted": False, "muted_until": "2027-01-15T16:00:00Z"}).muted_until is None


def test_scopes_that_say_nothing_are_dropped() -> None:
    prefs = parse_preferences({"scopes": {"a": {}, "b": {"push": None}, "c": {"stream": False}}})
    assert list(prefs.scopes) == ["c"]


# --- merge patch (RFC 7396) ---------------------------------------------------------------------------------


def test_merge_patch_is_rfc_7396() -> None:
    # The RFC's own example (section 3), less its array-in-object detail.
    target = {"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"}, "tags": ["a", "b"]}
    patch = {"title": "Hello!", "author": {"familyName": None}, "tags": ["c"], "phone": "+01"}
    assert merge_patch(target, patch) == {
        "title": "Hello!", "author": {"givenName": "John"}, "tags": ["c"], "phone": "+01",
    }  # fmt: skip
    assert target["author"] == {"givenName": "John", "familyName": "Doe"}  # not modified


BASE = parse_preferences(
    {
        "push": True,
        "quiet_hours": {
            "start": "22:00",
            "end": "07:00",
            "weekdays": ["sat", "sun"],
            "timezone": "Europe/Berlin",
        },
        "scopes": {"conversation:1": {"muted": True}, "conversation:2": {"push": False, "stream": False}},
    }
)


def test_patch_merges_members_and_leaves_the_rest() -> None:
    out = BASE.patched({"scopes": {"conversation:2": {"push": True}, "conversation:3": {"muted": True}}})
    assert out.scopes["conversation:2"] == ScopePrefs(push=True, stream=False)
    assert out.scopes["conversation:1"] == BASE.scopes["conversation:1"]
    assert out.scopes["conversation:3"].muted is True
    assert out.quiet_hours == BASE.quiet_hours and out.push is True


def test_patch_null_clears_a_field_a_scope_and_quiet_hours() -> None:
    out = BASE.patched({"push": None, "scopes": {"conversation:1": None, "conversation:2": {"stream": None}}})
    assert out.push is None
    assert "conversation:1" not in out.scopes
    assert out.scopes["conversation:2"] == ScopePrefs(push=False)
    assert BASE.patched({"quiet_hours": None}).quiet_hours is None
    cleared = BASE.patched({"quiet_hours": {"weekdays": None, "timezone": None}}).quiet_hours
    assert cleared is not None and cleared.weekdays is None and cleared.timezone is None


def test_patch_replaces_arrays_and_merges_quiet_hours() -> None:
    out = BASE.patched({"quiet_hours": {"weekdays": ["mon"], "end": "06:30"}}).quiet_hours
    assert out is not None
    assert out.weekdays == ("mon",) and out.end == time(6, 30) and out.start == time(22, 0)


def test_patch_result_is_validated_as_a_whole() -> None:
    with pytest.raises(InvalidPreferences) as caught:
        Preferences().patched({"quiet_hours": {"start": "23:00"}})  # no end anywhere
    assert caught.value.field == "quiet_hours.end"
    with pytest.raises(InvalidPreferences) as caught:
        BASE.patched({"quiet_hours": {"end": "22:00"}})  # now equal to the stored start
    assert caught.value.field == "quiet_hours.end"


def test_patching_muted_until_mutes_even_a_scope_stored_as_unmuted() -> None:
    unmuted = parse_preferences({"scopes": {"c": {"muted": False, "push": False}}})
    out = unmuted.patched({"scopes": {"c": {"muted_until": "2027-01-15T16:00:00Z"}}})
    assert out.scopes["c"].muted is True and out.scopes["c"].is_muted(T0)
    assert out.scopes["c"].push is False


def test_with_scope_replaces_one_scope_and_checks_its_name() -> None:
    out = BASE.with_scope("conversation:2", ScopePrefs(muted=True))
    assert out.scopes["conversation:2"] == ScopePrefs(muted=True)
    assert "conversation:2" not in BASE.with_scope("conversation:2", None).scopes
    assert "conversation:9" not in BASE.with_scope("conversation:9", ScopePrefs()).scopes
    with pytest.raises(InvalidPreferences) as caught:
        BASE.with_scope("bad scope", ScopePrefs(muted=True))
    assert caught.value.field == "scope"
