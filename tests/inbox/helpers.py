"""Builders and probes shared by the inbox tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tidings.inbox import InboxStore, NewItem, Reader
from tidings.inbox.tables import inbox_cursors, inbox_entries, inbox_items, inbox_marks

CAP = 30  # the store fixture's per-user cap


def item(title: str, **fields: Any) -> NewItem:
    fields.setdefault("event_id", f"ev-{title}")
    fields.setdefault("type", "orders.updated")
    return NewItem(title=title, **fields)


def reader(user: str, *roles: str, topics: tuple[str, ...] = ()) -> Reader:
    return Reader(user, frozenset(roles), frozenset(topics))


async def titles(store: InboxStore, who: Reader, **options: Any) -> list[str]:
    """Every title of the reader's inbox (all pages), newest first."""
    out: list[str] = []
    cursor = None
    while True:
        page = await store.list(who, cursor=cursor, limit=options.pop("limit", 7), **options)
        out += [i.title for i in page.items]
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


async def table_rows(engine: AsyncEngine) -> dict[str, int]:
    """Row counts of the inbox tables: proof that a refused request changed nothing."""
    out = {}
    async with engine.connect() as conn:
        for table in (inbox_items, inbox_entries, inbox_marks, inbox_cursors):
            out[table.name] = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
    return out


async def state(engine: AsyncEngine) -> tuple[list[Any], list[Any]]:
    """Every mark and cursor row, for before/after comparisons."""
    async with engine.connect() as conn:
        marks = list(
            await conn.execute(select(inbox_marks).order_by(inbox_marks.c.user_id, inbox_marks.c.seq))
        )
        cursors = list(await conn.execute(select(inbox_cursors).order_by(inbox_cursors.c.user_id)))
    return marks, cursors
