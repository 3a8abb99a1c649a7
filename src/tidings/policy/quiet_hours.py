"""Quiet hours as pure functions of (QuietHours, zone, instant): is the instant quiet, and when does it end.

A window is a span of local wall time [start, end). When end < start it crosses midnight and belongs to the
day it STARTS on: `{"start": "22:00", "end": "07:00", "weekdays": ["fri"]}` is Friday 22:00 to Saturday 07:00.

Windows are turned into instants per start day, so DST changes do not make quiet hours flap:
- a wall time that does not exist (skipped by a spring-forward gap) means the instant the gap ends, e.g.
  02:30 on Berlin's spring-forward day is 03:00 CEST: a window starting there starts at the transition, one
  ending there ends at it;
- a wall time that happens twice (the repeated hour of a fall-back) means its first occurrence, for the start
  and for the end alike: quiet hours ending at 02:30 end at the first 02:30.
A window is therefore at most a day's wall time long, plus or minus the DST shift (Lord Howe: 30 minutes).
Zones with odd offsets (Asia/Kathmandu +5:45, Pacific/Chatham +12:45/+13:45) need nothing special: all
arithmetic is on instants, the zone only maps wall times to instants.

Speed: decide() asks this for every user of an audience, so the common case is arithmetic. Where a zone's
UTC offset is the same over [now - 27 h, now + 27 h] (every window touching `now` lies inside that span), wall
time is instant plus offset and the window is found without building a datetime; a per-zone cache remembers
spans known to be steady. That rests on a fact of tzdata checked by a test: since 1970 no zone changes its
offset twice within 54 hours, so equal offsets at samples under 54 hours apart mean no change between them.
Elsewhere (near a transition, before 1970) the exact per-day construction above is used.

The zone is an argument, read at decision time: when the user travels (their zone changes), quiet hours
follow the new zone from the next decision on. Pushes already held carry the release instant computed when
they were held; `HeldStore.wake` makes them due so the worker decides again in the new zone.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from tidings.policy.preferences import WEEKDAYS, Preferences, QuietHours

__all__ = ["exact_window", "in_quiet_hours", "quiet_until", "quiet_window", "release_at", "wall_instant"]

_DAY = timedelta(days=1)
_MAX_CHAIN = 4  # windows that touch (possible only inside a DST gap) are followed this many times at most


def wall_instant(day: date, minute: int, zone: ZoneInfo) -> float:
    """Epoch seconds of local wall time `minute` (of the day) on `day` in `zone`, by the rules above."""
    wall = datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=zone)
    first = wall.timestamp()  # fold=0: the first occurrence; inside a gap, an instant after the gap
    back = datetime.fromtimestamp(first, zone)
    if (back.hour, back.minute, back.day) == (wall.hour, wall.minute, wall.day):
        return first
    # Skipped: fold=1 lands before the gap, fold=0 after it; find the transition (whole seconds) between.
    low, high = int(wall.replace(fold=1).timestamp()), int(first)
    after = back.utcoffset()
    while high - low > 1:
        mid = (low + high) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == after:
            high = mid
        else:
            low = mid
    return float(high)


def quiet_window(hours: QuietHours, zone: ZoneInfo, now: float) -> tuple[float, float] | None:
    """The quiet window [start, end) in epoch seconds that contains `now`, or None when `now` is not quiet."""
    offset = _steady_offset(zone, now)
    if offset is None:
        return exact_window(hours, zone, now)
    return _wall_window(hours, offset, now)


def exact_window(hours: QuietHours, zone: ZoneInfo, now: float) -> tuple[float, float] | None:
    """`quiet_window` by building each candidate day's window from wall times (right everywhere, slower)."""
    start_minute, end_minute = hours.start_minute, hours.end_minute
    crosses = end_minute < start_minute
    today = datetime.fromtimestamp(now, zone).date()
    # A window crossing midnight may have started yesterday; one that does not started today or not at all.
    for day in (today - _DAY, today) if crosses else (today,):
        if hours.weekdays is not None and WEEKDAYS[day.weekday()] not in hours.weekdays:
            continue
        start = wall_instant(day, start_minute, zone)
        if now < start:
            continue
        end = wall_instant(day + _DAY if crosses else day, end_minute, zone)
        if now < end:
            return start, end
    return None


def _wall_window(hours: QuietHours, offset: float, now: float) -> tuple[float, float] | None:
    """`quiet_window` where the zone's offset is `offset` throughout: plain arithmetic on local seconds."""
    local = now + offset
    day = local // 86400
    midnight = day * 86400 - offset  # the instant of local midnight today
    second = local - day * 86400
    weekday = (int(day) + 3) % 7  # 1970-01-01 was a Thursday
    start, end, days = hours.start_minute * 60, hours.end_minute * 60, hours.weekdays
    if start < end:
        if start <= second < end and (days is None or WEEKDAYS[weekday] in days):
            return midnight + start, midnight + end
        return None
    if second >= start:
        if days is None or WEEKDAYS[weekday] in days:
            return midnight + start, midnight + 86400 + end
        return None
    if second < end and (days is None or WEEKDAYS[weekday - 1] in days):
        return midnight - 86400 + start, midnight + end
    return None


_SPAN = 27 * 3600.0  # a window is < 24 h of wall time: every window touching `now` lies within now ± 27 h
_MAX_GAP = 50 * 3600.0  # samples closer than 54 h with one offset have no transition between them
_STEADY_FROM = 0.0  # before 1970 zones did change offsets in quick succession: no fast path there
_steady: dict[ZoneInfo, tuple[float, float, float]] = {}  # zone -> (offset, lo, hi): one offset on [lo, hi]


def _offset(zone: ZoneInfo, moment: float) -> float:
    delta = datetime.fromtimestamp(moment, zone).utcoffset()
    return 0.0 if delta is None else delta.total_seconds()


def _steady_offset(zone: ZoneInfo, now: float) -> float | None:
    """The zone's offset if it is the same all over [now - 27 h, now + 27 h], else None."""
    known = _steady.get(zone)
    if known is not None and known[1] + _SPAN <= now <= known[2] - _SPAN:
        return known[0]
    low, high = now - _SPAN, now + _SPAN
    if low < _STEADY_FROM:
        return None
    offset = _offset(zone, now)
    if _offset(zone, low) != offset or _offset(zone, high) != offset:
        return None
    if known is not None and known[0] == offset and max(low, known[1]) - min(high, known[2]) < _MAX_GAP:
        low, high = min(low, known[1]), max(high, known[2])  # the spans join without room for a change
    if len(_steady) > 4096:  # bounded: one entry per zone object in use
        _steady.clear()
    _steady[zone] = (offset, low, high)
    return offset


def in_quiet_hours(hours: QuietHours, zone: ZoneInfo, now: float) -> bool:
    return quiet_window(hours, zone, now) is not None


def release_at(hours: QuietHours, zone: ZoneInfo, now: float) -> float | None:
    """When the quiet hours containing `now` end (the first instant that is not quiet); None if not quiet."""
    window = quiet_window(hours, zone, now)
    if window is None:
        return None
    end = window[1]
    for _ in range(_MAX_CHAIN):
        following = quiet_window(hours, zone, end)
        if following is None:
            break
        end = following[1]
    return end


def quiet_until(prefs: Preferences | None, now: float) -> float | None:
    """When this user's quiet hours containing `now` end, in their zone; None when they are not quiet."""
    if prefs is None or prefs.quiet_hours is None:
        return None
    return release_at(prefs.quiet_hours, prefs.quiet_zone(), now)
