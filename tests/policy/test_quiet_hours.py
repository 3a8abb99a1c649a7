"""Quiet hours: windows crossing midnight, weekdays, DST gaps and repeats, odd offsets, a user who travels.

Expected instants are written in UTC by hand (from the zones' published transitions), not computed with the
module's own wall-time rules, so the explicit cases cannot agree with a wrong implementation by construction.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidings.policy.preferences import WEEKDAYS, QuietHours, parse_preferences
from tidings.policy.quiet_hours import (
    exact_window,
    in_quiet_hours,
    quiet_until,
    quiet_window,
    release_at,
    wall_instant,
)


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def hours(start: str, end: str, **more: Any) -> QuietHours:
    return QuietHours(start=start, end=end, **more)


BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
CHATHAM = ZoneInfo("Pacific/Chatham")
KATHMANDU = ZoneInfo("Asia/Kathmandu")


# --- ordinary days --------------------------------------------------------------------------------------------


def test_a_window_crossing_midnight() -> None:
    night = hours("22:00", "07:00")  # Berlin in January is UTC+1
    assert not in_quiet_hours(night, BERLIN, utc("2027-01-15 20:59:59"))
    assert quiet_window(night, BERLIN, utc("2027-01-15 21:00")) == (
        utc("2027-01-15 21:00"),
        utc("2027-01-16 06:00"),
    )
    assert release_at(night, BERLIN, utc("2027-01-16 03:00")) == utc("2027-01-16 06:00")
    assert release_at(night, BERLIN, utc("2027-01-16 05:59:59")) == utc("2027-01-16 06:00")
    assert release_at(night, BERLIN, utc("2027-01-16 06:00")) is None


def test_a_window_within_one_day() -> None:
    lunch = hours("12:00", "13:30")
    assert not in_quiet_hours(lunch, BERLIN, utc("2027-01-15 10:59"))
    assert release_at(lunch, BERLIN, utc("2027-01-15 11:00")) == utc("2027-01-15 12:30")
    assert not in_quiet_hours(lunch, BERLIN, utc("2027-01-15 12:30"))


def test_a_window_crossing_midnight_belongs_to_its_start_day() -> None:
    friday_night = hours("22:00", "07:00", weekdays=["fri"])  # 2027-01-15 is a Friday
    assert not in_quiet_hours(friday_night, BERLIN, utc("2027-01-14 22:00"))  # Thursday 23:00
    assert in_quiet_hours(friday_night, BERLIN, utc("2027-01-15 22:00"))  # Friday 23:00
    assert in_quiet_hours(friday_night, BERLIN, utc("2027-01-16 05:00"))  # Saturday 06:00: Friday's window
    assert not in_quiet_hours(friday_night, BERLIN, utc("2027-01-16 22:00"))  # Saturday 23:00
    saturday_morning = hours("22:00", "07:00", weekdays=["sat"])
    assert not in_quiet_hours(saturday_morning, BERLIN, utc("2027-01-16 05:00"))  # Sat 06:00 is Friday's


def test_weekend_only_same_day_window() -> None:
    weekend = hours("09:00", "12:00", weekdays=["sat", "sun"])
    assert not in_quiet_hours(weekend, BERLIN, utc("2027-01-15 09:00"))  # Friday 10:00
    assert in_quiet_hours(weekend, BERLIN, utc("2027-01-16 09:00"))  # Saturday 10:00
    assert in_quiet_hours(weekend, BERLIN, utc("2027-01-17 09:00"))  # Sunday 10:00


# --- DST: Europe/Berlin -----------------------------------------------------------------------------------------
# 2027-03-28 01:00Z: 02:00 CET -> 03:00 CEST (02:00-03:00 does not exist)
# 2027-10-31 01:00Z: 03:00 CEST -> 02:00 CET (02:00-03:00 happens twice)


def test_berlin_start_in_the_skipped_hour_starts_at_the_transition() -> None:
    early = hours("02:30", "06:00")
    assert not in_quiet_hours(early, BERLIN, utc("2027-03-28 00:59:59"))  # 01:59:59 CET
    assert quiet_window(early, BERLIN, utc("2027-03-28 01:00")) == (
        utc("2027-03-28 01:00"),
        utc("2027-03-28 04:00"),
    )


def test_berlin_end_in_the_skipped_hour_ends_at_the_transition() -> None:
    late = hours("22:00", "02:30")
    assert release_at(late, BERLIN, utc("2027-03-27 21:00")) == utc("2027-03-28 01:00")
    assert not in_quiet_hours(late, BERLIN, utc("2027-03-28 01:00"))


def test_berlin_start_in_the_repeated_hour_is_its_first_occurrence_and_does_not_flap() -> None:
    early = hours("02:30", "07:00")
    assert not in_quiet_hours(early, BERLIN, utc("2027-10-31 00:29"))  # 02:29 CEST
    assert quiet_window(early, BERLIN, utc("2027-10-31 00:30")) == (
        utc("2027-10-31 00:30"),
        utc("2027-10-31 06:00"),
    )
    # 01:10Z is 02:10 CET, a wall time before 02:30: still the same quiet window, not a gap in it.
    assert release_at(early, BERLIN, utc("2027-10-31 01:10")) == utc("2027-10-31 06:00")


def test_berlin_end_in_the_repeated_hour_is_its_first_occurrence() -> None:
    late = hours("22:00", "02:30")
    assert release_at(late, BERLIN, utc("2027-10-30 20:00")) == utc("2027-10-31 00:30")  # 02:30 CEST
    assert not in_quiet_hours(late, BERLIN, utc("2027-10-31 01:15"))  # 02:15 CET, the second time round


def test_windows_touching_inside_a_gap_release_at_the_end_of_the_next() -> None:
    # 02:50 -> 02:10 the next day: on 2027-03-28 both wall times fall in the gap, so Saturday's window ends
    # at the transition where Sunday's begins: the release is Sunday's end, not a release into quiet hours.
    odd = hours("02:50", "02:10")
    assert release_at(odd, BERLIN, utc("2027-03-28 00:30")) == utc("2027-03-29 00:10")


# --- DST: America/New_York -------------------------------------------------------------------------------------
# 2027-03-14 07:00Z: 02:00 EST -> 03:00 EDT;   2027-11-07 06:00Z: 02:00 EDT -> 01:00 EST


def test_new_york_window_shortened_by_the_gap() -> None:
    short = hours("01:30", "02:30")
    assert quiet_window(short, NEW_YORK, utc("2027-03-14 06:45")) == (
        utc("2027-03-14 06:30"),
        utc("2027-03-14 07:00"),
    )


def test_new_york_night_window_across_spring_and_fall() -> None:
    night = hours("23:00", "07:00")
    assert release_at(night, NEW_YORK, utc("2027-03-14 04:00")) == utc("2027-03-14 11:00")  # 07:00 EDT
    assert release_at(night, NEW_YORK, utc("2027-11-07 04:00")) == utc("2027-11-07 12:00")  # 07:00 EST
    assert quiet_window(night, NEW_YORK, utc("2027-11-07 05:30")) == (
        utc("2027-11-07 03:00"),
        utc("2027-11-07 12:00"),
    )


def test_new_york_window_inside_the_repeated_hour() -> None:
    repeated = hours("01:15", "01:45")  # 01:00-02:00 happens twice on 2027-11-07
    assert quiet_window(repeated, NEW_YORK, utc("2027-11-07 05:20")) == (
        utc("2027-11-07 05:15"),
        utc("2027-11-07 05:45"),
    )
    assert not in_quiet_hours(repeated, NEW_YORK, utc("2027-11-07 06:20"))  # 01:20 EST, the second time


# --- odd offsets ------------------------------------------------------------------------------------------------


def test_kathmandu_quarter_hour_offset() -> None:
    night = hours("22:00", "06:00")  # +05:45, no DST
    assert not in_quiet_hours(night, KATHMANDU, utc("2027-01-15 16:14"))
    assert release_at(night, KATHMANDU, utc("2027-01-15 16:15")) == utc("2027-01-16 00:15")


def test_lord_howe_half_hour_dst() -> None:
    # 2027-10-02 15:30Z: 02:00 +10:30 -> 02:30 +11 (02:00-02:30 does not exist)
    gap = hours("02:15", "06:00")
    assert not in_quiet_hours(gap, LORD_HOWE, utc("2027-10-02 15:29:59"))
    assert quiet_window(gap, LORD_HOWE, utc("2027-10-02 15:30")) == (
        utc("2027-10-02 15:30"),
        utc("2027-10-02 19:00"),
    )
    # 2027-04-03 15:00Z: 02:00 +11 -> 01:30 +10:30 (01:30-02:00 happens twice)
    repeat = hours("01:45", "07:00")
    assert quiet_window(repeat, LORD_HOWE, utc("2027-04-03 15:10")) == (
        utc("2027-04-03 14:45"),
        utc("2027-04-03 20:30"),
    )


def test_chatham_plus_twelve_forty_five() -> None:
    # 2027-09-25 14:00Z: 02:45 +12:45 -> 03:45 +13:45
    gap = hours("03:00", "05:00")
    assert quiet_window(gap, CHATHAM, utc("2027-09-25 14:00")) == (
        utc("2027-09-25 14:00"),
        utc("2027-09-25 15:15"),
    )
    night = hours("22:00", "07:00")
    assert release_at(night, CHATHAM, utc("2027-01-15 12:00")) == utc("2027-01-15 17:15")  # 07:00 +13:45


def test_wall_instant_in_a_zone_that_skipped_a_whole_day() -> None:
    apia = ZoneInfo(
        "Pacific/Apia"
    )  # 2011-12-30 did not exist: 2011-12-29 24:00 -10 became 2011-12-31 00:00 +14
    assert wall_instant(date(2011, 12, 30), 12 * 60, apia) == utc("2011-12-30 10:00")


# --- the user travels ---------------------------------------------------------------------------------------


def test_quiet_hours_follow_the_zone_in_force_at_decision_time() -> None:
    prefs = parse_preferences({"quiet_hours": {"start": "22:00", "end": "07:00"}})  # no zone of its own
    now = utc("2027-01-15 22:30")  # 23:30 in Berlin, 17:30 in New York, 07:30 next day in Tokyo
    assert quiet_until(prefs.with_device_timezone("Europe/Berlin"), now) == utc("2027-01-16 06:00")
    assert quiet_until(prefs.with_device_timezone("America/New_York"), now) is None
    assert quiet_until(prefs.with_device_timezone("Asia/Tokyo"), now) is None
    assert quiet_until(prefs.with_device_timezone(None), now) == utc("2027-01-16 07:00")  # UTC fallback
    own = parse_preferences(
        {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "America/New_York"}}
    )
    assert quiet_until(own.with_device_timezone("Europe/Berlin"), now) is None  # its own zone wins
    assert quiet_until(None, now) is None


# --- no flapping: a minute-by-minute sweep over DST days finds exactly one window per day --------------------


@pytest.mark.parametrize(
    ("zone", "day", "start", "end"),
    [
        (BERLIN, "2027-03-27", "22:00", "02:30"), (BERLIN, "2027-03-27", "02:30", "07:00"),
        (BERLIN, "2027-10-30", "22:00", "02:30"), (BERLIN, "2027-10-30", "02:30", "07:00"),
        (NEW_YORK, "2027-11-06", "01:15", "01:45"), (LORD_HOWE, "2027-04-02", "01:45", "07:00"),
        (CHATHAM, "2027-09-24", "03:00", "02:50"),
    ],
)  # fmt: skip
def test_sweep_finds_each_window_as_one_unbroken_span(zone: ZoneInfo, day: str, start: str, end: str) -> None:
    window = hours(start, end)
    first = datetime.fromisoformat(day).replace(tzinfo=zone).timestamp()
    spans: list[tuple[float, float] | None] = []
    for minute in range(3 * 24 * 60):
        t = first + minute * 60
        found = quiet_window(window, zone, t)
        if found is not None:
            assert found[0] <= t < found[1]
        if not spans or spans[-1] != found:
            spans.append(found)
    seen = [span for span in spans if span is not None]
    assert len(seen) == len(set(seen))  # a window lost and found again would appear twice: flapping
    assert 3 <= len(seen) <= 4  # one per day the sweep touches
    assert all(b[0] >= a[1] for a, b in itertools.pairwise(seen))  # in order; may touch in a gap


# --- properties ---------------------------------------------------------------------------------------------

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham", "Asia/Kathmandu",
         "America/Santiago", "Europe/Dublin", "Asia/Tehran", "America/St_Johns", "Pacific/Kiritimati",
         "America/Sao_Paulo", "Africa/Casablanca", "Pacific/Apia"]  # fmt: skip

instants = st.integers(int(utc("2005-01-01 00:00")), int(utc("2037-12-31 00:00"))).map(float)


def _transitions(zone: ZoneInfo, first: float, last: float) -> list[float]:
    """The instants at which `zone` changes its UTC offset between first and last (6-hourly scan, refined)."""
    found = []
    t = first
    while t < last:
        if datetime.fromtimestamp(t, zone).utcoffset() != datetime.fromtimestamp(t + 21600, zone).utcoffset():
            low, high = int(t), int(t + 21600)
            before = datetime.fromtimestamp(low, zone).utcoffset()
            while high - low > 1:
                mid = (low + high) // 2
                low, high = (
                    (mid, high) if datetime.fromtimestamp(mid, zone).utcoffset() == before else (low, mid)
                )
            found.append(float(high))
        t += 21600
    return found


TRANSITIONS = [
    (name, moment)
    for name in ZONES
    for moment in _transitions(ZoneInfo(name), utc("2026-01-01 00:00"), utc("2028-12-31 00:00"))
]


def _window(draw: st.DrawFn) -> QuietHours:
    s = draw(st.integers(0, 1439))
    e = draw(st.integers(0, 1439).filter(lambda v: v != s))
    days = draw(st.none() | st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=7))
    return hours(f"{s // 60:02d}:{s % 60:02d}", f"{e // 60:02d}:{e % 60:02d}", weekdays=days)


@st.composite
def cases(draw: st.DrawFn) -> tuple[QuietHours, ZoneInfo, float]:
    return _window(draw), ZoneInfo(draw(st.sampled_from(ZONES))), draw(instants)


@st.composite
def near_transitions(draw: st.DrawFn) -> tuple[QuietHours, ZoneInfo, float]:
    """Instants within 30 hours of a real offset change (DST, or a zone changing its standard offset)."""
    name, moment = draw(st.sampled_from(TRANSITIONS))
    return _window(draw), ZoneInfo(name), moment + draw(st.integers(-30 * 3600, 30 * 3600))


def naive_inside(window: QuietHours, zone: ZoneInfo, now: float) -> bool:
    """Wall-clock membership: right whenever no offset change is near."""
    local = datetime.fromtimestamp(now, zone)
    minute = local.hour * 60 + local.minute
    s, e = window.start_minute, window.end_minute

    def on(day: date) -> bool:
        return window.weekdays is None or WEEKDAYS[day.weekday()] in window.weekdays

    if s < e:
        return s <= minute < e and on(local.date())
    return (minute >= s and on(local.date())) or (minute < e and on(local.date() - timedelta(days=1)))


def steady(zone: ZoneInfo, now: float) -> bool:
    offsets = {datetime.fromtimestamp(now + h * 3600, zone).utcoffset() for h in range(-50, 51, 2)}
    return len(offsets) == 1


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases() | near_transitions())
def test_property_release_is_the_end_of_a_quiet_span(case: tuple[QuietHours, ZoneInfo, float]) -> None:
    window, zone, now = case
    end = release_at(window, zone, now)
    if end is None:
        assert not in_quiet_hours(window, zone, now)
        return
    assert now < end <= now + 2 * 86400
    assert not in_quiet_hours(window, zone, end)
    for t in (now, (now + end) / 2, end - 1):
        assert in_quiet_hours(window, zone, t)


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_property_away_from_transitions_quiet_hours_are_wall_clock_hours(
    case: tuple[QuietHours, ZoneInfo, float],
) -> None:
    window, zone, now = case
    if steady(zone, now):
        assert in_quiet_hours(window, zone, now) == naive_inside(window, zone, now)


# --- the fast path (steady offset, cached spans) agrees with the exact construction ---------------------------


@settings(max_examples=800, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases() | near_transitions())
def test_property_fast_path_agrees_with_the_exact_construction(
    case: tuple[QuietHours, ZoneInfo, float],
) -> None:
    window, zone, now = case
    assert quiet_window(window, zone, now) == exact_window(window, zone, now)


@pytest.mark.parametrize(
    "name", ["Europe/Berlin", "Australia/Lord_Howe", "Pacific/Chatham", "Africa/Casablanca"]
)
def test_a_year_walked_forward_agrees_with_the_exact_construction(name: str) -> None:
    # Walking forward grows and re-seeds the per-zone cache of steady spans across every transition of a year.
    zone = ZoneInfo(name)
    windows = [hours("22:00", "07:00"), hours("01:45", "02:50", weekdays=["sun"]), hours("12:00", "13:00")]
    now = utc("2027-01-01 00:00")
    while now < utc("2028-01-01 00:00"):
        for window in windows:
            assert quiet_window(window, zone, now) == exact_window(window, zone, now), (name, now)
        now += 77 * 60  # not a divisor of an hour: samples fall on every minute offset in turn


def test_no_zone_changes_its_offset_twice_within_54_hours_since_1970() -> None:
    # The fast path's premise (see the module docstring), checked against the tzdata in use.
    from zoneinfo import _zoneinfo, available_timezones

    close = []
    for key in sorted(available_timezones()):
        info = _zoneinfo.ZoneInfo.no_cache(key)
        moments = [t for t in getattr(info, "_trans_utc", []) if t >= 0]
        close += [(key, a) for a, b in itertools.pairwise(moments) if b - a < 54 * 3600]
    assert close == []


def test_cached_steady_spans_never_join_across_offset_changes() -> None:
    # Winter and the next winter share an offset; the summer between them must not be taken as steady.
    from tidings.policy import quiet_hours

    quiet_hours._steady.clear()
    noonish = hours("12:00", "13:00")  # quiet 11:00-12:00Z in winter, 10:00-11:00Z in summer
    for moment in ("2027-01-15 11:30", "2027-12-15 11:30", "2027-07-15 10:30", "2027-07-15 11:30"):
        now = utc(moment)
        assert quiet_window(noonish, BERLIN, now) == exact_window(noonish, BERLIN, now), moment
    assert in_quiet_hours(noonish, BERLIN, utc("2027-07-15 10:30"))
