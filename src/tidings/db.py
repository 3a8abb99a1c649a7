"""Database plumbing: the shared metadata, the async engine factory and the packaged Alembic migrations.

SQLite is the zero-setup default (a file under the data directory), PostgreSQL via asyncpg is for production.
Migrations ship inside the package (`tidings/migrations`) and run programmatically, so `upgrade()` works
from an installed wheel with no alembic.ini in the working directory.

SQLite notes (why the connect/begin hooks below exist):
- WAL lets readers proceed while one writer commits; busy_timeout makes a second writer wait, not fail.
  The file is switched to WAL once, before any pooled connection exists (see `_ensure_wal`).
- Python's sqlite3 driver opens transactions lazily and DEFERRED. A deferred transaction that reads and then
  writes can fail with SQLITE_BUSY_SNAPSHOT without ever consulting the busy handler. We take over transaction
  control (isolation_level=None) and issue `BEGIN IMMEDIATE` for transactions opened through `write_tx()`, so
  concurrent writers queue on the busy timeout instead of failing.
- foreign_keys is off by default in SQLite; device_channels relies on ON DELETE CASCADE.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, MetaData, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .errors import SchemaNotReady

__all__ = [
    "alembic_config", "create_engine", "current", "is_sqlite", "metadata", "prepare_schema", "upgrade", "write_tx",
]  # fmt: skip

# Deterministic constraint names keep Alembic autogenerate/`check` stable across SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

SQLITE_BUSY_TIMEOUT_MS = 10_000
_IMMEDIATE = "tidings_sqlite_immediate"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An AsyncEngine for `url` (sqlite+aiosqlite:// or postgresql+asyncpg://), tuned for our use."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        # plain postgresql:// means the async driver here
        parsed = parsed.set(drivername="postgresql+asyncpg")
    if parsed.get_backend_name() == "sqlite":
        if parsed.drivername == "sqlite":
            parsed = parsed.set(drivername="sqlite+aiosqlite")
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            _ensure_wal(parsed.database)
        engine = create_async_engine(parsed, **kwargs)
        _install_sqlite_hooks(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)  # a restarted PostgreSQL must not surface as a 500
    return create_async_engine(parsed, **kwargs)


def _ensure_wal(path: str) -> None:
    """Put the file in WAL mode once (the mode is stored in the file).

    Switching needs an exclusive lock and SQLite does not always wait for it through the busy handler, so
    connections switching concurrently fail with "database is locked". Doing it here, before the engine hands
    out connections, and retrying briefly when another process is doing the same, avoids that.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            with closing(sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)) as conn:
                if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see module docstring)
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; fsync per checkpoint, not per commit
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@asynccontextmanager
async def write_tx(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction that will write: takes SQLite's write lock up front; a plain transaction elsewhere."""
    async with engine.connect() as conn:
        await conn.execution_options(**{_IMMEDIATE: True})
        async with conn.begin():
            yield conn


# --- migrations ---------------------------------------------------------------------------------------------


def alembic_config() -> Config:
    """An Alembic Config pointing at the packaged migrations; no ini file needed."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    return cfg


# Any constant shared by every tidings process: concurrent upgrades (several pods starting, or an operator's
# `tidings db upgrade` during a deploy) queue on it instead of racing to create the same tables.
_MIGRATION_LOCK_ID = 0x7469_6469_6E67  # "tiding"


def _upgrade_sync(conn: Connection, revision: str) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_ID})")
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


def _current_sync(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


async def upgrade(url: str, revision: str = "head", *, engine: AsyncEngine | None = None) -> None:
    """Bring the database at `url` to `revision` (default: the newest shipped migration)."""
    own = engine is None
    eng = engine or create_engine(url)
    try:
        async with write_tx(eng) as conn:
            await conn.run_sync(_upgrade_sync, revision)
    finally:
        if own:
            await eng.dispose()


async def current(url: str, *, engine: AsyncEngine | None = None) -> str | None:
    """The revision the database at `url` is at, or None when it was never migrated."""
    own = engine is None
    eng = engine or create_engine(url)
    try:
        async with eng.connect() as conn:
            return await conn.run_sync(_current_sync)
    finally:
        if own:
            await eng.dispose()


def head_revision() -> str | None:
    """The newest revision shipped in the package."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def prepare_schema(engine: AsyncEngine, *, require: bool) -> None:
    """At start: with `require` (worker processes) refuse a stale schema; else bring SQLite's up to date (embedded
    mode keeps its own schema current; PostgreSQL is migrated by an operator, `tidings db upgrade`)."""
    url = engine.url.render_as_string(hide_password=False)
    if require:  # fail at start with the fix, rather than dead-letter every job on "no such table"
        found, head = await current(url, engine=engine), head_revision()
        if found != head:
            raise SchemaNotReady(
                f"the database schema is at {found or 'nothing'}, this process needs {head}: "
                "run `tidings db upgrade` (or start `tidings serve` once with SQLite)"
            )
    elif is_sqlite(url):
        await upgrade(url, engine=engine)
