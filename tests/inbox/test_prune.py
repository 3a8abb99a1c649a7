"""Retention: items age out (with their entries and marks), direct items beyond a user's cap go, idle cursors too."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from inbox.helpers import CAP, item, reader, table_rows, titles
from support import ManualClock
from tidings.inbox import InboxStore, PruneReport
from tidings.inbox.prune import prune

DAY = 86400.0


async def test_prune_deletes_items_older_than_the_retention(
    store: InboxStore, engine: AsyncEngine, clock: ManualClock
) -> None:
    old = await store.add(item("old"), users=["alice"], roles=["staff"])
    await store.add(item("old broadcast"), broadcast=True)
    await store.mark(reader("alice"), "read", [old])
    clock.advance(20 * DAY)
    await store.add(item("recent"), users=["alice"])
    assert await store.prune() == PruneReport(expired=0, capped=0, cursors=0)
    clock.advance(11 * DAY)  # the first two are 31 days old now, the retention is 30
    report = await store.prune()
    assert report == PruneReport(expired=2, capped=0, cursors=0)
    assert await titles(store, reader("alice", "staff")) == ["recent"]
    assert await table_rows(engine) == {
        "inbox_items": 1, "inbox_entries": 1, "inbox_marks": 0, "inbox_cursors": 0,
    }  # fmt: skip


async def test_prune_works_through_a_backlog_in_batches(
    store: InboxStore, engine: AsyncEngine, clock: ManualClock
) -> None:
    await store.add_many([(item(f"n{k}"), [f"u:user{k % 3}"]) for k in range(25)])
    clock.advance(31 * DAY)
    await store.add(item("fresh"), users=["user0"])
    now = datetime.fromtimestamp(clock.now, UTC)
    report = await prune(engine, now=now, retention_days=30, cap=CAP, batch=4)
    assert report.expired == 25
    assert (await table_rows(engine))["inbox_items"] == 1


async def test_prune_caps_in_batches(store: InboxStore, engine: AsyncEngine, clock: ManualClock) -> None:
    await store.add_many([(item(f"n{k}"), ["u:alice"]) for k in range(CAP + 10)])
    await store.add_many([(item(f"m{k}"), ["u:bob"]) for k in range(CAP + 1)])
    before = await titles(store, reader("alice"))
    now = datetime.fromtimestamp(clock.now, UTC)
    report = await prune(engine, now=now, retention_days=30, cap=CAP, batch=4)
    assert report.capped == 11
    assert await titles(store, reader("alice")) == before
    assert (await table_rows(engine))["inbox_items"] == 2 * CAP


async def test_prune_caps_direct_items_per_user_and_spares_shared_ones(
    store: InboxStore, engine: AsyncEngine
) -> None:
    shared = await store.add(item("shared old"), users=["alice", "bob"])
    await store.add(item("role old"), roles=["staff"])
    for k in range(CAP + 4):
        await store.add(item(f"n{k}"), users=["alice"])
    before = await titles(store, reader("alice", "staff"))
    report = await store.prune()
    assert report == PruneReport(expired=0, capped=5, cursors=0)  # 4 oldest n* and alice's entry of `shared`
    # nothing alice can see changed: the pruned entries were outside her window already
    assert await titles(store, reader("alice", "staff")) == before
    # bob keeps the item they shared; role items are not capped by anyone's inbox
    assert await titles(store, reader("bob")) == ["shared old"]
    assert await titles(store, reader("carol", "staff")) == ["role old"]
    rows = await table_rows(engine)
    assert rows["inbox_items"] == 2 + CAP  # the 4 orphans went; `shared` stays for bob
    assert (await store.list(reader("bob"))).items[0].id == shared


async def test_prune_drops_the_marks_of_capped_items(store: InboxStore, engine: AsyncEngine) -> None:
    ids = [await store.add(item(f"n{k}"), users=["alice"]) for k in range(CAP + 2)]
    await store.mark(reader("alice"), "read", ids[:4])
    await store.prune()
    assert (await table_rows(engine))["inbox_marks"] == 2  # ids[2], ids[3] remain inside the cap


async def test_prune_forgets_cursors_nobody_moved_within_the_retention(
    store: InboxStore, engine: AsyncEngine, clock: ManualClock
) -> None:
    await store.add(item("n"), users=["alice"])
    await store.mark(reader("alice"), "read", "all")
    clock.advance(31 * DAY)
    report = await store.prune()
    assert (report.expired, report.cursors) == (1, 0)  # a day of slack for the clocks of other processes
    clock.advance(DAY)
    assert (await store.prune()).cursors == 1
    assert (await table_rows(engine))["inbox_cursors"] == 0
    await store.add(item("new"), users=["alice"])
    assert (await store.counts(reader("alice"))).unread == 1


async def test_prune_on_an_empty_store(store: InboxStore) -> None:
    assert (await store.prune()).total == 0


async def test_prunes_running_at_once_do_the_work_once_without_deadlocking(
    store: InboxStore, engine: AsyncEngine, clock: ManualClock
) -> None:
    # every process runs the pruner: on PostgreSQL two deleting the same rows in other orders would deadlock
    for user in ("alice", "bob", "carol"):
        await store.add_many([(item(f"{user}{k}"), [f"u:{user}"]) for k in range(CAP + 20)])
    await store.add_many([(item(f"shared{k}"), ["r:staff", "u:alice"]) for k in range(20)])
    clock.advance(31 * DAY)
    await store.add_many([(item(f"fresh{k}"), ["u:alice", "u:bob"]) for k in range(CAP + 5)])
    now = datetime.fromtimestamp(clock.now, UTC)
    reports = await asyncio.gather(
        *(prune(engine, now=now, retention_days=30, cap=CAP, batch=7) for _ in range(3))
    )
    assert sum(r.expired for r in reports) == 3 * (CAP + 20) + 20
    assert sum(r.capped for r in reports) == 2 * 5
    assert (await table_rows(engine))["inbox_items"] == CAP  # the 5 oldest fresh ones lost both entries
