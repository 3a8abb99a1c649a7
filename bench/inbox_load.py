"""Data set of the inbox benchmark: a database of its own, loaded with COPY, dropped afterwards.

Shape (defaults): 1,000,000 direct items spread over 10,000 users (about 100 each, by a seeded RNG), 1,000
role-wide items for role `staff` interleaved in time, three "size" users holding 10, 1,000 and 100,000 items
(to show marking all read does not depend on the inbox size), and a mix of read state: a third of the users
never read anything, a third marked all read at 70 % of the timeline (all seen at 90 %), a third read ten
items one by one and archived two. Rows go in through asyncpg's COPY into the migrated schema (indexes
included), then VACUUM ANALYZE so plans and visibility maps are those of a settled table.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from sqlalchemy.engine import make_url

from tidings import db

__all__ = ["ROLE", "SIZE_USERS", "DataSet", "Shape", "bench_database", "load"]

ADMIN_DSN = os.environ.get("TIDINGS_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
ROLE = "staff"
SIZE_USERS = {"size-10": 10, "size-1k": 1_000, "size-100k": 100_000}
CATEGORIES = ("orders", "messages", "tasks", "billing", "system")
ENTRY_COLUMNS = ("channel", "seq", "category", "scope", "critical")
ITEM_COLUMNS = (
    "seq", "event_id", "type", "title", "body", "url", "icon", "category", "data", "scope", "critical",
    "occurred_at", "created_at",
)  # fmt: skip


@dataclass(frozen=True)
class Shape:
    users: int = 10_000
    direct_items: int = 1_000_000
    role_items: int = 1_000
    seed: int = 14


@dataclass
class DataSet:
    shape: Shape
    url: str
    items: int  # rows in inbox_items
    entries: int
    load_seconds: float
    newest_seq: int


def _user(n: int) -> str:
    return f"user-{n:05d}"


@asynccontextmanager
async def bench_database() -> AsyncIterator[str]:
    """A fresh database on the server of ADMIN_DSN, migrated to head; dropped (FORCE) on the way out."""
    name = f"tidings_bench_inbox_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_DSN, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(ADMIN_DSN).set(drivername="postgresql+asyncpg", database=name)
    url_text = url.render_as_string(hide_password=False)
    try:
        await db.upgrade(url_text)
        yield url_text
    finally:
        admin = await asyncpg.connect(ADMIN_DSN, timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def _item(seq: int, at: datetime, rng: random.Random, kind: str) -> tuple[object, ...]:
    category = CATEGORIES[seq % len(CATEGORIES)]
    return (
        seq, f"{int(at.timestamp() * 1000)}-{seq % 1000}", f"{category}.updated", f"{kind} notification #{seq}",
        "Something you follow changed; open it to see what happened and who did it.",
        f"https://app.example/{category}/{seq}", None, category, f'{{"ref": {rng.randrange(10**6)}}}',
        None, False, at, at,
    )  # fmt: skip


def _rows(shape: Shape) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], dict[str, list[int]]]:
    rng = random.Random(shape.seed)
    total = shape.direct_items + shape.role_items + sum(SIZE_USERS.values())
    start = datetime.now(UTC) - timedelta(days=30)
    step = timedelta(days=30) / total
    role_every = max(1, total // max(1, shape.role_items))
    size_left = dict(SIZE_USERS)
    items: list[tuple[object, ...]] = []
    entries: list[tuple[object, ...]] = []
    per_user: dict[str, list[int]] = {}
    role_left = shape.role_items
    for seq in range(1, total + 1):
        at = start + step * seq
        if role_left and seq % role_every == 0:
            role_left -= 1
            items.append(_item(seq, at, rng, "Team"))
            entries.append((f"r:{ROLE}", seq, items[-1][7], None, False))
            continue
        pending = [name for name, left in size_left.items() if left]
        if pending and rng.random() < sum(size_left.values()) / (total - seq + 1):
            user = rng.choice(pending)
            size_left[user] -= 1
        else:
            user = _user(rng.randrange(shape.users))
        items.append(_item(seq, at, rng, "Personal"))
        entries.append((f"u:{user}", seq, items[-1][7], None, False))
        per_user.setdefault(user, []).append(seq)
    return items, entries, per_user


def _read_state(
    shape: Shape, per_user: dict[str, list[int]], newest: int
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    now = datetime.now(UTC)
    cursors: list[tuple[object, ...]] = []
    marks: list[tuple[object, ...]] = []
    for n in range(shape.users):
        user = _user(n)
        seqs = per_user.get(user, [])
        if n % 3 == 1:
            cursors.append((user, int(newest * 0.9), int(newest * 0.7), 0, now))
        elif n % 3 == 2:
            for k, seq in enumerate(seqs[-12:]):
                archived = now if k < 2 else None
                marks.append((user, seq, now, None if archived else now, archived))
    return cursors, marks


async def load(url: str, shape: Shape) -> DataSet:
    started = time.perf_counter()
    items, entries, per_user = _rows(shape)
    newest = len(items)
    cursors, marks = _read_state(shape, per_user, newest)
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.copy_records_to_table("inbox_items", records=items, columns=ITEM_COLUMNS)
        await conn.copy_records_to_table("inbox_entries", records=entries, columns=ENTRY_COLUMNS)
        await conn.copy_records_to_table(
            "inbox_cursors",
            records=cursors,
            columns=("user_id", "seen_upto", "read_upto", "archived_upto", "updated_at"),
        )
        await conn.copy_records_to_table(
            "inbox_marks", records=marks, columns=("user_id", "seq", "seen_at", "read_at", "archived_at")
        )
        await conn.execute(f"SELECT setval(pg_get_serial_sequence('inbox_items', 'seq'), {newest})")
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return DataSet(shape, url, len(items), len(entries), time.perf_counter() - started, newest)
