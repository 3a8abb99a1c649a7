"""Fixtures of the policy tests: a clock standing still at T0 (epoch seconds) until a test moves it."""

from __future__ import annotations

import pytest

from support import ManualClock

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z; tests move time from here


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(frozen_at=T0)
