"""The database's side of the inbox benchmark: the hot statements' own execution time, and their plans.

Time measured in the client includes two round trips per call (pool pre-ping + the statement) and, on a shared
host, waiting for a CPU at each end of each. Here the same prepared statements (as asyncpg prepares them for the
store, so PostgreSQL's plan cache behaves as in production) run under `EXPLAIN (ANALYZE, TIMING OFF)`, which
reports what the server spent planning and executing them: the floor the client figures stand on.
"""

from __future__ import annotations

import json
import random
from typing import Any

from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from bench.inbox_load import ROLE
from tidings.inbox import InboxStore, Reader
from tidings.inbox.queries import channel_params, counts_statement, page_statement

__all__ = ["PAGE", "db_times", "explain"]

PAGE = 20


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool | int):
        return str(int(value)) if not isinstance(value, bool) else ("true" if value else "false")
    return "'" + str(value).replace("'", "''") + "'"


def _statements(n_channels: int) -> dict[str, Any]:
    return {
        "list first page": page_statement(
            n_channels, after=False, unread_only=False, category=False, archived=False, muted=False
        ),
        "counts": counts_statement(n_channels, muted=False),
    }


def _params(store: InboxStore, reader: Reader) -> dict[str, Any]:
    channels = reader.channels()
    return {
        **channel_params(channels),
        "user": reader.user_id,
        "cap": store.max_items_per_user,
        "limit": PAGE + 1,
    }


async def db_times(store: InboxStore, users: int, samples: int) -> list[tuple[str, list[float]]]:
    """[(name, [server ms per call])] for a first page and counts, readers without and with the role."""
    rng = random.Random(5)
    dialect = asyncpg_dialect()
    out: dict[str, list[float]] = {}
    async with store.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        prepared = []
        for staff in (False, True):
            n_channels = len(Reader("x", frozenset({ROLE}) if staff else frozenset()).channels())
            for name, stmt in _statements(n_channels).items():
                compiled = stmt.compile(dialect=dialect)
                handle = f"inbox_bench_{len(prepared)}"
                await raw.execute(f"PREPARE {handle} AS {compiled}")
                label = f"{name}, reader with role" if staff else f"{name}, reader"
                prepared.append((label, staff, handle, compiled))
        for _ in range(samples):
            for label, staff, handle, compiled in prepared:
                reader = Reader(
                    f"user-{rng.randrange(users):05d}", frozenset({ROLE}) if staff else frozenset()
                )
                values = compiled.construct_params(_params(store, reader))
                args = ", ".join(_literal(values[key]) for key in compiled.positiontup or ())
                plan = await raw.fetchval(
                    f"EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON, FORMAT JSON) EXECUTE {handle}({args})"
                )
                summary = (json.loads(plan) if isinstance(plan, str) else plan)[0]
                out.setdefault(label, []).append(summary["Planning Time"] + summary["Execution Time"])
        for *_, handle, _ in prepared:
            await raw.execute(f"DEALLOCATE {handle}")
    return list(out.items())


async def explain(store: InboxStore) -> str:
    """EXPLAIN ANALYZE of a first page and of counts for a reader holding the role (nothing read)."""
    reader = Reader("user-00042", frozenset({ROLE}))
    params = _params(store, reader)
    out = []
    async with store.engine.connect() as conn:
        for name, stmt in _statements(len(reader.channels())).items():
            sql = str(
                stmt.params(**params).compile(
                    dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
                )
            )
            plan = await conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}")
            out.append(f"-- {name}, reader with role, nothing read\n" + "\n".join(line for (line,) in plan))
    return "\n\n".join(out)
