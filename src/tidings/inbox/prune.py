"""Inbox retention: delete what aged out and what a user's cap pushed out, in short transactions.

- Items older than the retention go with their entries and marks (ON DELETE CASCADE). Role, topic and
  broadcast items leave only this way: they are shared, so no one user's cap can delete them (a reader sees
  at most the newest `cap` of everything anyway, see queries.py).
- Direct entries beyond a user's newest `cap` are deleted (as seq ranges, oldest first) with that user's marks
  at or below them, and items left without any entry go too. Nothing a reader can see changes: those entries
  were outside the window.
- A cursor nobody moved for the retention (plus a day of slack for clocks of different processes) covers only
  items already deleted, so it is forgotten.

Each step works in batches of `batch` rows, one transaction each, so a large backlog never holds SQLite's
write lock (or PostgreSQL row locks) for long. Finding over-cap users scans the direct entries' index once.

One prune at a time: every process runs the pruner (each `tidings worker`, an embedded server), and two
prunes deleting the same rows in different orders deadlock on PostgreSQL. A prune first takes a session-level
advisory lock there; a process that finds it taken leaves the work to the one holding it (SQLite's write lock
already serialises the transactions).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import BigInteger, ColumnElement, any_, bindparam, cast, delete, exists, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tidings.db import write_tx
from tidings.inbox.models import PruneReport
from tidings.inbox.tables import inbox_cursors, inbox_entries, inbox_items, inbox_marks

__all__ = ["prune"]

BATCH = 5000
_CURSOR_SLACK = timedelta(days=1)


_PRUNE_LOCK = 1953063018  # "tidj": a key of its own (the store's insert lock uses two int4 keys)


async def prune(
    engine: AsyncEngine, *, now: datetime, retention_days: int, cap: int, batch: int = BATCH
) -> PruneReport:
    if engine.dialect.name != "postgresql":
        return await _prune(engine, now=now, retention_days=retention_days, cap=cap, batch=batch)
    async with engine.connect() as lock:
        taken = (await lock.execute(text(f"SELECT pg_try_advisory_lock({_PRUNE_LOCK})"))).scalar()
        await lock.commit()
        if not taken:
            return PruneReport(expired=0, capped=0, cursors=0)  # another process is pruning
        try:
            return await _prune(engine, now=now, retention_days=retention_days, cap=cap, batch=batch)
        finally:
            await lock.execute(text(f"SELECT pg_advisory_unlock({_PRUNE_LOCK})"))
            await lock.commit()


async def _prune(
    engine: AsyncEngine, *, now: datetime, retention_days: int, cap: int, batch: int
) -> PruneReport:
    cutoff = now - timedelta(days=retention_days)
    expired = await _expire(engine, cutoff, batch)
    capped = await _cap(engine, cap, batch)
    async with write_tx(engine) as conn:
        result = await conn.execute(
            delete(inbox_cursors).where(inbox_cursors.c.updated_at < cutoff - _CURSOR_SLACK)
        )
    return PruneReport(expired=expired, capped=capped, cursors=result.rowcount or 0)


async def _expire(engine: AsyncEngine, cutoff: datetime, batch: int) -> int:
    i = inbox_items.c
    total = 0
    while True:
        oldest = select(i.seq).where(i.created_at < cutoff).order_by(i.created_at).limit(batch)
        async with write_tx(engine) as conn:
            result = await conn.execute(delete(inbox_items).where(i.seq.in_(oldest.scalar_subquery())))
        deleted = result.rowcount or 0
        total += deleted
        if deleted < batch:
            return total


async def _cap(engine: AsyncEngine, cap: int, batch: int) -> int:
    e = inbox_entries.c
    # "u:" .. "u;" is every direct channel (";" follows ":"), as a range the primary key can scan.
    over = (
        select(e.channel)
        .where(e.channel >= "u:", e.channel < "u;")
        .group_by(e.channel)
        .having(func.count() > cap)
    )
    async with engine.connect() as conn:
        channels = [channel for (channel,) in await conn.execute(over)]
    total = 0
    for channel in channels:
        total += await _cap_channel(engine, channel, cap, batch)
    return total


async def _cap_channel(engine: AsyncEngine, channel: str, cap: int, batch: int) -> int:
    e, m = inbox_entries.c, inbox_marks.c
    # The newest entry beyond the cap, then batches of the oldest entries up to it, deleted as seq ranges.
    beyond = select(e.seq).where(e.channel == channel).order_by(e.seq.desc()).offset(cap).limit(1)
    total = 0
    while True:
        async with write_tx(engine) as conn:
            limit = (await conn.execute(beyond)).scalar()
            if limit is None:
                return total
            upto = (
                await conn.execute(
                    select(e.seq).where(e.channel == channel).order_by(e.seq).offset(batch - 1).limit(1)
                )
            ).scalar()
            upto = limit if upto is None else min(upto, limit)
            gone = await conn.execute(
                delete(inbox_entries).where(e.channel == channel, e.seq <= upto).returning(e.seq)
            )
            seqs = [seq for (seq,) in gone]
            # All of this user's marks at or below `upto`, role items' too: with `cap` direct items above it,
            # none of them can be in the user's window again, whatever roles a later token carries.
            await conn.execute(delete(inbox_marks).where(m.user_id == channel[2:], m.seq <= upto))
            await conn.execute(delete(inbox_items).where(_one_of(inbox_items.c.seq, seqs, conn), _orphan))
        total += len(seqs)
        if limit == upto:
            return total


_orphan = ~exists().where(inbox_entries.c.seq == inbox_items.c.seq)


def _one_of(column: ColumnElement[int], values: list[int], conn: AsyncConnection) -> ColumnElement[bool]:
    """`column IN values`: one array parameter on PostgreSQL (a list of thousands of parameters costs more to
    send and plan than the delete itself), an IN list elsewhere."""
    if conn.dialect.name == "postgresql":
        return column == any_(cast(bindparam("values", values), ARRAY(BigInteger())))
    return column.in_(values)
