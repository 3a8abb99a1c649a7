from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from registry.helpers import FakeClock
from tidings.registry.store import DeviceStore


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(engine: AsyncEngine, clock: FakeClock) -> DeviceStore:
    return DeviceStore(engine, clock=clock, ttl_days=90)
