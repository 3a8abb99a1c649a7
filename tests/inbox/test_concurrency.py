"""Mark-all-read racing new items: an item that was not yet visible when the cursor moved stays unread."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from inbox.helpers import item, reader
from tidings.db import write_tx
from tidings.inbox import InboxStore

_WAITING_ADVISORY = text(
    "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
    "WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()"
)


async def _until_a_lock_waits(engine: AsyncEngine) -> None:
    async with asyncio.timeout(10), engine.connect() as conn:
        while not (await conn.execute(_WAITING_ADVISORY)).scalar_one():
            await asyncio.sleep(0.01)  # polling a condition, under the deadline above


# PostgreSQL only: on SQLite every writer, mark-all included, holds the one database write lock (BEGIN
# IMMEDIATE), so no insert can be in flight while a mark-all reads the newest id — there is no race to test.
@pytest.mark.postgres
@pytest.mark.parametrize("migrated_url", ["postgresql"], indirect=True)
async def test_mark_all_read_waits_for_an_insert_in_flight_with_a_lower_id(
    store: InboxStore, engine: AsyncEngine
) -> None:
    assert engine.dialect.name == "postgresql"
    alice = reader("alice")
    async with asyncio.timeout(30):
        async with write_tx(engine) as slow:
            [in_flight] = await store.add_in(slow, [(item("slow"), ["u:alice"])])
            fast = await store.add(item("fast"), users=["alice"])  # a higher id, committed first
            assert int(fast) > int(in_flight)
            marking = asyncio.create_task(store.mark(alice, "read", "all"))
            # Without the insert/mark-all lock the cursor would move to `fast` now and cover `slow`, which no
            # reader could have seen yet. With it, mark-all waits for the insert to commit.
            await _until_a_lock_waits(engine)
            assert not marking.done()
        result = await marking
    assert result.up_to == fast
    assert (await store.counts(alice)).unread == 0  # `slow` was committed before the cursor moved
    await store.add(item("after"), users=["alice"])
    assert (await store.counts(alice)).unread == 1


async def test_concurrent_mark_all_read_and_new_items_agree_with_the_cursor(store: InboxStore) -> None:
    alice = reader("alice", "staff")

    async def publish(n: int) -> str:
        if n % 3 == 0:
            return await store.add(item(f"role{n}"), roles=["staff"])
        return await store.add(item(f"n{n}"), users=["alice"])

    async with asyncio.timeout(60):
        results = await asyncio.gather(
            *(publish(n) for n in range(24)),
            *(store.mark(alice, "read", "all") for _ in range(6)),
        )
    ids = [int(r) for r in results if isinstance(r, str)]
    cursors = [int(r.up_to) for r in results if not isinstance(r, str) and r.up_to is not None]
    final = max(cursors, default=0)
    # the cursor is the highest any mark-all reached (it never moves back), and it splits the items exactly
    page = await store.list(alice, limit=100)
    assert sorted(int(i.id) for i in page.items) == sorted(ids)
    assert all(i.read == (int(i.id) <= final) for i in page.items)
    counts = await store.counts(alice)
    assert counts.unread == sum(1 for i in ids if i > final)
    # and marking all read now leaves nothing unread, newest included
    await store.mark(alice, "read", "all")
    assert (await store.counts(alice)).unread == 0


# PostgreSQL only: SQLite has no server connection to lose.
@pytest.mark.postgres
@pytest.mark.parametrize("migrated_url", ["postgresql"], indirect=True)
async def test_reads_survive_their_pooled_connections_being_killed(
    store: InboxStore, engine: AsyncEngine
) -> None:
    # Reads skip the pool's pre-ping: a connection PostgreSQL dropped (a restart) shows at its next use, and
    # the read is tried once more on a fresh one instead of failing.
    await store.add(item("one"), users=["alice"])
    assert (await store.counts(reader("alice"))).unread == 1  # a read connection is pooled now
    async with engine.connect() as conn:
        await conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    assert (await store.counts(reader("alice"))).unread == 1
    assert [i.title for i in (await store.list(reader("alice"))).items] == ["one"]
