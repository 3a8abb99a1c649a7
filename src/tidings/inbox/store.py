"""InboxStore: per-user notification history and read state in SQL (SQLite or PostgreSQL).

Writes: `add` stores an item once (plus one entry per audience channel); `mark` records seen/read/archived for
named items (rows in inbox_marks) or for `all` (one cursor row per user: O(1) whatever the inbox holds).
Reads: `list` (a keyset-paged window, newest first) and `counts`, both bounded by the per-user cap.

Mark-all and concurrent inserts. The cursor says "everything up to seq X", with X the highest committed seq.
On PostgreSQL seqs are handed out at insert, not at commit: an insert holding seq 10 may commit after seq 11,
and a mark-all that saw 11 would silently cover 10 — an item its reader never saw. So every insert holds a
SHARED transaction-level advisory lock and mark-all takes it EXCLUSIVE before reading X: mark-all waits for the
inserts in flight (a few statements each) and inserts starting meanwhile wait for it (one small upsert).
Inserts never wait for each other. On SQLite `write_tx` (BEGIN IMMEDIATE) already serialises every writer.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Row, case, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tidings.config import Settings
from tidings.db import write_tx
from tidings.inbox import prune as pruning
from tidings.inbox.cursor import decode_cursor, encode_cursor, item_id, parse_id, parse_ids
from tidings.inbox.errors import InvalidInboxInput, ItemsNotFound
from tidings.inbox.models import (
    Counts,
    InboxItem,
    Mark,
    MarkResult,
    NewItem,
    Page,
    PruneReport,
    Reader,
    audience_channels,
)
from tidings.inbox.queries import channel_params, counts_statement, page_statement
from tidings.inbox.tables import inbox_cursors, inbox_entries, inbox_items, inbox_marks

__all__ = ["MAX_PAGE", "InboxStore"]

MAX_PAGE = 100
# Two int4 keys (a separate key space from the migration lock's single bigint): "tidi", "nbox".
_LOCK = "(1953063017, 1851944824)"
_INSERT_LOCK = text(f"SELECT pg_advisory_xact_lock_shared{_LOCK}")
_MARK_ALL_LOCK = text(f"SELECT pg_advisory_xact_lock{_LOCK}")
_CURSOR_COLUMNS = {"seen": ("seen_upto",), "read": ("seen_upto", "read_upto"), "archive": ("archived_upto",)}
_MARK_COLUMNS = {"seen": ("seen_at",), "read": ("seen_at", "read_at"), "archive": ("archived_at",)}


class InboxStore:
    """Inbox items and read state. Time comes from `clock` (epoch seconds) so tests can move it."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Callable[[], float] = time.time,
        retention_days: int = 90,
        max_items_per_user: int = 1000,
        max_ids_per_request: int = 500,
    ) -> None:
        self.engine = engine
        self._clock = clock
        self.retention_days = retention_days
        self.max_items_per_user = max_items_per_user
        self.max_ids_per_request = max_ids_per_request
        self._postgres = engine.dialect.name == "postgresql"
        # Reads are single statements (one snapshot): on PostgreSQL they skip BEGIN/ROLLBACK, two round trips,
        # and the pool's pre-ping, one more: a small pool of their own without it, where a connection found
        # dead (PostgreSQL restarted) is replaced and the read tried once more (`_read`). On a loaded host each
        # round trip waits for a CPU at both ends: one instead of two took a quarter off the p99 of counts.
        # (Not on SQLite, whose connections tidings.db keeps in manual transaction control.)
        self._reads = (
            create_async_engine(
                engine.url, isolation_level="AUTOCOMMIT", pool_pre_ping=False, pool_size=4, max_overflow=4
            )
            if self._postgres
            else engine
        )

    @classmethod
    def from_settings(
        cls, engine: AsyncEngine, settings: Settings, *, clock: Callable[[], float] = time.time
    ) -> InboxStore:
        """A store with the TIDINGS_INBOX_* limits of `settings`."""
        return cls(
            engine,
            clock=clock,
            retention_days=settings.inbox_retention_days,
            max_items_per_user=settings.inbox_max_items_per_user,
            max_ids_per_request=settings.inbox_max_ids_per_request,
        )

    async def close(self) -> None:
        """Release the reads' own pool (PostgreSQL); the engine given is the caller's to dispose."""
        if self._reads is not self.engine:
            await self._reads.dispose()

    async def _read(self, stmt: Any, params: dict[str, Any]) -> list[Row[Any]]:
        for attempt in (1, 2):
            try:
                async with self._reads.connect() as conn:
                    return list(await conn.execute(stmt, params))
            except DBAPIError as exc:  # without a pre-ping, a dead pooled connection shows here, once
                if attempt == 2 or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    def __repr__(self) -> str:
        return f"<InboxStore {self.engine.url.render_as_string(hide_password=True)!r}>"

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # --- writes ------------------------------------------------------------------------------------------

    async def add(
        self,
        item: NewItem,
        *,
        users: Iterable[str] = (),
        roles: Iterable[str] = (),
        topics: Iterable[str] = (),
        broadcast: bool = False,
    ) -> str:
        """Store `item` once for its audience; returns its id (the same for every recipient)."""
        channels = audience_channels(users, roles, topics, broadcast)
        return (await self.add_many([(item, channels)]))[0]

    async def add_many(self, batch: Sequence[tuple[NewItem, Sequence[str]]]) -> list[str]:
        """Store many items in one transaction; each with its entry channels (`u:<user>`, `r:<role>`, ...).

        Build the channels with `tidings.inbox.models.audience_channels` (or `Audience.channels()` of an
        event, which spells them the same way). Returns the ids in the order given.
        """
        if not batch:
            return []
        async with write_tx(self.engine) as conn:
            return await self.add_in(conn, batch)

    async def add_in(
        self, conn: AsyncConnection, batch: Sequence[tuple[NewItem, Sequence[str]]]
    ) -> list[str]:
        """`add_many` inside the caller's transaction (opened with `tidings.db.write_tx`).

        The items become visible, and count for a concurrent mark-all, when that transaction commits; keep it
        short: on PostgreSQL it holds the insert lock (see the module docstring) until then.
        """
        if not batch:
            return []
        now = self._now()
        rows = [_item_row(item, now) for item, _ in batch]
        if self._postgres:
            await conn.execute(_INSERT_LOCK)
        result = await conn.execute(
            inbox_items.insert().returning(inbox_items.c.seq, sort_by_parameter_order=True), rows
        )
        seqs = [row.seq for row in result]
        entries = [
            {"channel": channel, "seq": seq, "category": item.category, "scope": item.scope,
             "critical": item.critical}
            for seq, (item, channels) in zip(seqs, batch, strict=True)
            for channel in dict.fromkeys(channels)
        ]  # fmt: skip
        if entries:
            await conn.execute(inbox_entries.insert(), entries)
        return [item_id(seq) for seq in seqs]

    async def mark(
        self, reader: Reader, mark: Mark, ids: Iterable[str] | Literal["all"], *, up_to: str | None = None
    ) -> MarkResult:
        """Mark items seen, read (implies seen) or archived: the ids named, or `all`.

        `all` moves the reader's cursor to the newest item stored (or to `up_to`, the newest item the client
        has shown, if older): one row, whatever the inbox holds; items arriving later stay unread. Named ids
        that are not in the reader's inbox raise ItemsNotFound and nothing changes; more than
        `max_ids_per_request` raise TooManyIds.
        """
        if mark not in _MARK_COLUMNS:
            raise InvalidInboxInput("mark", "one of seen, read, archive")
        if ids == "all":
            return await self._mark_all(reader, mark, up_to)
        found, bad = parse_ids(ids, self.max_ids_per_request)
        now = self._now()
        async with write_tx(self.engine) as conn:
            visible = await self._visible(conn, reader, found)
            missing = bad + [value for seq, value in found.items() if seq not in visible]
            if missing:
                raise ItemsNotFound(missing)
            if found:
                values: dict[str, datetime | None] = dict.fromkeys(("seen_at", "read_at", "archived_at"))
                values.update({name: now for name in _MARK_COLUMNS[mark]})
                rows = [{"user_id": reader.user_id, "seq": seq, **values} for seq in found]
                await conn.execute(self._upsert_marks, rows)
        return MarkResult(mark, len(found))

    async def _visible(self, conn: AsyncConnection, reader: Reader, found: dict[int, str]) -> set[int]:
        if not found:
            return set()
        stmt = select(inbox_entries.c.seq).where(
            inbox_entries.c.seq.in_(list(found)), inbox_entries.c.channel.in_(reader.channels())
        )
        return {seq for (seq,) in await conn.execute(stmt)}

    async def _mark_all(self, reader: Reader, mark: Mark, up_to: str | None) -> MarkResult:
        limit = None
        if up_to is not None:
            limit = parse_id(up_to)
            if limit is None:
                raise InvalidInboxInput("up_to", "not an item id")
        async with write_tx(self.engine) as conn:
            if self._postgres:
                await conn.execute(_MARK_ALL_LOCK)
            newest = (await conn.execute(select(func.max(inbox_items.c.seq)))).scalar()
            upto = newest if limit is None or newest is None else min(newest, limit)
            if upto is None:
                return MarkResult(mark, 0, None)
            values = {"user_id": reader.user_id, "seen_upto": 0, "read_upto": 0, "archived_upto": 0}
            values.update({name: upto for name in _CURSOR_COLUMNS[mark]})
            values["updated_at"] = self._now()
            await conn.execute(self._upsert_cursor(mark), values)
        return MarkResult(mark, 0, item_id(upto))

    @functools.cached_property
    def _upsert_marks(self) -> Any:
        # A mark keeps its first timestamp: coalesce(existing, new) for each column.
        ins = self._insert(inbox_marks)
        set_ = {
            name: func.coalesce(inbox_marks.c[name], ins.excluded[name])
            for name in ("seen_at", "read_at", "archived_at")
        }
        return ins.on_conflict_do_update(index_elements=[inbox_marks.c.user_id, inbox_marks.c.seq], set_=set_)

    @functools.cache  # noqa: B019 (one statement per mark kind, for the store's lifetime)
    def _upsert_cursor(self, mark: Mark) -> Any:
        # A cursor never moves back (an `up_to` older than the cursor changes nothing).
        ins = self._insert(inbox_cursors)
        set_: dict[str, Any] = {"updated_at": ins.excluded.updated_at}
        for name in _CURSOR_COLUMNS[mark]:
            col, new = inbox_cursors.c[name], ins.excluded[name]
            set_[name] = case((new > col, new), else_=col)
        return ins.on_conflict_do_update(index_elements=[inbox_cursors.c.user_id], set_=set_)

    def _insert(self, table: Any) -> Any:
        return (postgresql if self._postgres else sqlite).insert(table)

    async def prune(self) -> PruneReport:
        """Delete items older than the retention, direct entries beyond each user's cap, and idle cursors."""
        return await pruning.prune(
            self.engine, now=self._now(), retention_days=self.retention_days, cap=self.max_items_per_user
        )

    # --- reads -------------------------------------------------------------------------------------------

    async def list(
        self,
        reader: Reader,
        *,
        cursor: str | None = None,
        limit: int = 20,
        unread_only: bool = False,
        category: str | None = None,
        archived: bool = False,
        exclude_scopes: Collection[str] = (),
    ) -> Page:
        """A page of the reader's inbox, newest first.

        `archived=False` (default) leaves archived items out; True lists only them. `exclude_scopes`: items of
        these (muted) scopes are left out unless critical. Bad cursor → InvalidCursor; limit outside
        1..MAX_PAGE → InvalidInboxInput.
        """
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInboxInput("limit", f"must be 1-{MAX_PAGE}")
        before = decode_cursor(cursor) if cursor is not None else None
        channels = reader.channels()
        stmt = page_statement(
            len(channels), after=before is not None, unread_only=unread_only, category=category is not None,
            archived=archived, muted=bool(exclude_scopes),
        )  # fmt: skip
        params = self._params(reader, channels, exclude_scopes)
        params.update(limit=limit + 1, before=before, category=category)
        rows = await self._read(stmt, params)
        items = [_item(row) for row in rows[:limit]]
        next_cursor = encode_cursor(rows[limit - 1].seq) if len(rows) > limit else None
        return Page(items, next_cursor)

    async def counts(self, reader: Reader, *, exclude_scopes: Collection[str] = ()) -> Counts:
        """Unseen and unread items of the reader's inbox (at most its cap), and unread per named category."""
        channels = reader.channels()
        stmt = counts_statement(len(channels), muted=bool(exclude_scopes))
        rows = await self._read(stmt, self._params(reader, channels, exclude_scopes))
        return Counts(
            unseen=sum(int(row.unseen or 0) for row in rows),
            unread=sum(row.unread for row in rows),
            by_category={row.category: row.unread for row in rows if row.category is not None},
        )

    def _params(
        self, reader: Reader, channels: tuple[str, ...], exclude_scopes: Collection[str]
    ) -> dict[str, Any]:
        params: dict[str, Any] = channel_params(channels)
        params.update(user=reader.user_id, cap=self.max_items_per_user, scopes=sorted(exclude_scopes))
        return params


def _item_row(item: NewItem, now: datetime) -> dict[str, Any]:
    return {
        "event_id": item.event_id, "type": item.type, "title": item.title, "body": item.body,
        "url": item.url, "icon": item.icon, "category": item.category,
        "data": dict(item.data) if item.data is not None else None, "scope": item.scope,
        "critical": item.critical, "occurred_at": item.occurred_at or now, "created_at": now,
    }  # fmt: skip


def _item(row: Row[Any]) -> InboxItem:
    return InboxItem(
        id=item_id(row.seq), event_id=row.event_id, type=row.type, title=row.title, body=row.body,
        url=row.url, icon=row.icon, category=row.category, data=row.data, scope=row.scope,
        critical=row.critical, occurred_at=row.occurred_at, created_at=row.created_at,
        seen=bool(row.is_seen), read=bool(row.is_read), archived=bool(row.is_archived),
    )  # fmt: skip
