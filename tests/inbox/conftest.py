"""Fixtures of the inbox tests: an InboxStore on each backend (SQLite file, real PostgreSQL) with a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from inbox.helpers import CAP
from registry.helpers import T0
from support import ManualClock
from tidings.inbox import InboxStore


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(frozen_at=T0)


@pytest.fixture
async def store(engine: AsyncEngine, clock: ManualClock) -> AsyncIterator[InboxStore]:
    inbox = InboxStore(engine, clock=clock, retention_days=30, max_items_per_user=CAP, max_ids_per_request=50)
    yield inbox
    await inbox.close()
