"""The delivery log on the real databases (SQLite file and PostgreSQL): batch insert, query, prune."""

from __future__ import annotations

import time

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from support import ManualClock
from tidings.delivery.log import DeliveryLog, DeliveryRecord


def rec(event_id: str, device: str, user: str, at: float, outcome: str = "delivered") -> DeliveryRecord:
    return DeliveryRecord(event_id, device, user, "apns", outcome, "", 200, 1, 12.5, at)


async def test_one_statement_per_batch_and_query_filters(engine: AsyncEngine, clock: ManualClock) -> None:
    log = DeliveryLog(engine, clock=clock)
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            statements.append(statement)

    now = time.time()
    rows = [rec("ev-1", f"d{i}", "u1" if i % 2 else "u2", now + i) for i in range(50)]
    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        await log.record(rows)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert len(statements) == 1  # multi-row VALUES, not one INSERT per device
    await log.record([rec("ev-2", "d1", "u1", now, "dead_token")])

    by_event = await log.query(event_id="ev-1", limit=1000)
    assert len(by_event) == 50 and by_event[0].device_id == "d49"  # newest first
    assert by_event[0].latency_ms == 12.5 and abs(by_event[0].created_at - (now + 49)) < 0.01
    by_user = await log.query(user_id="u1")
    assert {r.event_id for r in by_user} == {"ev-1", "ev-2"} and len(by_user) == 26
    both = await log.query(event_id="ev-2", user_id="u1")
    assert [(r.outcome, r.device_id) for r in both] == [("dead_token", "d1")]
    assert len(await log.query(limit=3)) == 3
    assert both[0].as_dict()["created_at"].endswith("+00:00")


async def test_long_reasons_are_truncated_to_the_column(engine: AsyncEngine) -> None:
    log = DeliveryLog(engine)
    long = DeliveryRecord("ev-1", "d1", "u1", "fcm", "retry_later", "x" * 5000, None, 1, None, time.time())
    await log.record([long])
    [row] = await log.query(event_id="ev-1")
    assert len(row.reason) == 256


async def test_prune_keeps_the_retention_window(engine: AsyncEngine, clock: ManualClock) -> None:
    log = DeliveryLog(engine, clock=clock, retention_days=7)
    now = clock()
    await log.record([rec("old", "d1", "u1", now - 8 * 86_400), rec("new", "d1", "u1", now - 6 * 86_400)])
    assert await log.prune() == 1
    assert [r.event_id for r in await log.query(user_id="u1")] == ["new"]
    clock.advance(2 * 86_400)
    assert await log.prune() == 1 and await log.query() == []
