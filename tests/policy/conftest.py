"""Fixtures of the policy tests: a controllable clock (epoch seconds)."""

from __future__ import annotations

import pytest

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z; tests move time from here


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
