"""``python -m bench.inbox [--quick] [--samples N] [--explain]``: the inbox on PostgreSQL at a million rows.

Loads the data set of `bench/inbox_load.py` into a database of its own (dropped afterwards), then times the
store's public calls from this process (asyncpg through SQLAlchemy, as the hub will call them), one call at a
time, the operations of a group taking turns so a burst of foreign load hits all of them alike: over many
random users a first page, pages 1-3, an unread-only page and counts, for readers without and with the role
that 1,000 role-wide items address; marking all read for users of 10 to 100,000 items; publishing an item to
one user, one role, everyone, ten users (with the rows each writes); the same through the hub
(`bench/inbox_hub.py`: counts as `hub.inbox.counts` answers them, `hub.publish`, the live fan-out); then one
prune.

Targets (issue 14): list and counts p99 < 10 ms; mark-all-read flat in the inbox size; publishing to a role
costs what publishing to one user costs. The machine is shared: `uptime` before and after is printed, and
the run takes the host-wide benchmark lock (bench/launcher.py) so two benchmarks never overlap.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from bench.inbox_db import PAGE, db_times, explain
from bench.inbox_load import ROLE, SIZE_USERS, DataSet, Shape, bench_database, load
from bench.launcher import exclusive
from tidings import db
from tidings.inbox import InboxStore, NewItem, Reader
from tidings.inbox.tables import inbox_entries, inbox_items


@dataclass
class Row:
    what: str
    n: int
    p50: float
    p99: float
    max: float
    note: str = ""


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


Op = Callable[[], Awaitable[object]]


async def _round_robin(ops: list[tuple[str, Op, str]], samples: int, budget: float = 120) -> list[Row]:
    """Time each op `samples` times, taking turns, so a burst of foreign load hits every row alike."""
    for _ in range(min(50, samples)):  # warm the statement cache, the plans and the connection pool
        for _name, op, _note in ops:
            await op()
    took: list[list[float]] = [[] for _ in ops]
    deadline = time.monotonic() + budget
    stopped = False
    for _ in range(samples):
        for k, (_name, op, _note) in enumerate(ops):
            t0 = time.perf_counter()
            await op()
            took[k].append((time.perf_counter() - t0) * 1000)
        if time.monotonic() > deadline:
            stopped = True
            break
    rows = []
    for (name, _op, note), values in zip(ops, took, strict=True):
        if stopped:
            note = (note + f" (stopped at the {budget:.0f} s budget)").strip()
        rows.append(Row(name, len(values), _pct(values, 50), _pct(values, 99), max(values), note))
    return rows


def _readers(users: int, staff: bool, seed: int) -> Callable[[], Reader]:
    rng = random.Random(seed)
    roles = frozenset({ROLE}) if staff else frozenset()
    return lambda: Reader(f"user-{rng.randrange(users):05d}", roles)


async def _reads(store: InboxStore, bare: InboxStore, data: DataSet, samples: int) -> list[Row]:
    ops: list[tuple[str, Op, str]] = []
    for staff in (False, True):
        who = "reader with role" if staff else "reader"
        pick = _readers(data.shape.users, staff, seed=7 + staff)

        async def third(pick: Callable[[], Reader] = pick) -> object:
            reader = pick()
            page = await store.list(reader, limit=PAGE)
            page = await store.list(reader, limit=PAGE, cursor=page.next_cursor)
            return await store.list(reader, limit=PAGE, cursor=page.next_cursor)

        ops += [
            (f"list first page ({PAGE}), {who}", lambda p=pick: store.list(p(), limit=PAGE), ""),
            (f"list pages 1-3, {who}", third, "3 calls per sample"),
            (f"list unread only, {who}", lambda p=pick: store.list(p(), limit=PAGE, unread_only=True), ""),
            (f"counts, {who}", lambda p=pick: store.counts(p()), ""),
        ]
    big = Reader("size-100k", frozenset({ROLE}))
    ops.append(("counts, 100,000-item user + role", lambda: store.counts(big), "window capped at 1,000"))
    # The same calls as the store made them before its reads had a pool of their own: through the engine's pool,
    # whose pre-ping (tidings.db turns it on for PostgreSQL) is a round trip of its own per call, and on a
    # loaded host every round trip waits for a CPU twice.
    pick = _readers(data.shape.users, True, seed=9)
    note = "before: reads through the engine's pool (pre-ping: 2 round trips)"
    ops.append((f"list first page ({PAGE}), reader with role", lambda: bare.list(pick(), limit=PAGE), note))
    ops.append(("counts, reader with role", lambda: bare.counts(pick()), note))
    return await _round_robin(ops, samples, budget=120)


async def _marks(store: InboxStore, samples: int) -> list[Row]:
    ops: list[tuple[str, Op, str]] = [
        (f"mark all read, inbox of {size:,}", lambda r=Reader(user): store.mark(r, "read", "all"), "")
        for user, size in SIZE_USERS.items()
    ]
    reader = Reader("size-1k")

    async def some() -> object:
        page = await store.list(reader, limit=10)
        return await store.mark(reader, "read", [item.id for item in page.items])

    ops.append(("list 10 + mark those 10 read", some, "2 calls per sample"))
    return await _round_robin(ops, samples // 4)


async def _rows_written(store: InboxStore) -> tuple[int, int]:
    async with store.engine.connect() as conn:
        items = (await conn.execute(select(func.count()).select_from(inbox_items))).scalar_one()
        entries = (await conn.execute(select(func.count()).select_from(inbox_entries))).scalar_one()
    return items, entries


async def _publish(store: InboxStore, samples: int) -> list[Row]:
    item = NewItem(event_id="1-0", type="orders.updated", title="Order shipped", body="Your order left.")
    targets: list[tuple[str, dict[str, Any]]] = [
        ("publish to one user", {"users": ["user-00001"]}),
        (f"publish to role {ROLE!r}", {"roles": [ROLE]}),
        ("publish to everyone", {"broadcast": True}),
        ("publish to 10 users", {"users": [f"user-{n:05d}" for n in range(10)]}),
    ]
    ops: list[tuple[str, Op, str]] = []
    for what, audience in targets:
        before = await _rows_written(store)
        await store.add(item, **audience)
        after = await _rows_written(store)
        note = f"writes {after[0] - before[0]} item + {after[1] - before[1]} entry rows"
        ops.append((what, lambda a=audience: store.add(item, **a), note))
    return await _round_robin(ops, samples // 2)


async def _prune(store: InboxStore) -> list[Row]:
    """One prune with work (the 100,000-item user down to the cap), then one with nothing to do."""
    rows = []
    for what in (
        "prune: 100,000-item user down to the cap",
        "prune: nothing to do (scan for over-cap users)",
    ):
        t0 = time.perf_counter()
        report = await store.prune()
        took = (time.perf_counter() - t0) * 1000
        rows.append(
            Row(what, 1, took, took, took, f"{report.capped:,} entries capped, {report.expired} expired")
        )
    return rows


async def _db(store: InboxStore, data: DataSet, samples: int) -> list[Row]:
    rows = []
    for name, values in await db_times(store, data.shape.users, samples):
        note = "in the database: planning + execution (EXPLAIN ANALYZE of the prepared statement)"
        rows.append(Row(f"db: {name}", len(values), _pct(values, 50), _pct(values, 99), max(values), note))
    return rows


def _table(rows: list[Row]) -> str:
    lines = ["| operation | n | p50 ms | p99 ms | max ms | note |", "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r.what} | {r.n} | {r.p50:.2f} | {r.p99:.2f} | {r.max:.2f} | {r.note} |")
    return "\n".join(lines)


def _uptime() -> str:
    with open("/proc/loadavg") as fh:
        return "load average " + " ".join(fh.read().split()[:3]) + f" on {os.cpu_count()} CPUs"


async def run(shape: Shape, samples: int, plans: bool) -> None:
    print(f"before: {_uptime()}", flush=True)
    async with bench_database() as url:
        data = await load(url, shape)
        print(
            f"loaded {data.items:,} items / {data.entries:,} entries in {data.load_seconds:.1f} s "
            f"(COPY + VACUUM ANALYZE)",
            flush=True,
        )
        engine = db.create_engine(url, pool_size=2)
        store, bare = InboxStore(engine), InboxStore(engine)
        await bare.close()
        bare._reads = engine.execution_options(isolation_level="AUTOCOMMIT")  # as before (see _reads)
        try:
            rows = await _reads(store, bare, data, samples)
            rows += await _db(store, data, samples // 2)
            rows += await _marks(store, samples)
            rows += await _publish(store, samples)
            from bench.inbox_hub import hub_rows

            rows += await hub_rows(url, data, samples, _round_robin, Row)
            rows += await _prune(store)
            print(_table(rows), flush=True)
            if plans:
                print("\n" + await explain(store))
        finally:
            await store.close()
            await engine.dispose()
    print(f"after: {_uptime()}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.inbox", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="100,000 items over 1,000 users: a smoke run")
    p.add_argument("--samples", type=int, default=1000, help="timed calls per read operation")
    p.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of the two hot queries")
    args = p.parse_args()
    shape = Shape(users=1_000, direct_items=100_000) if args.quick else Shape()
    with exclusive():
        asyncio.run(run(shape, args.samples, args.explain))


if __name__ == "__main__":
    main()
