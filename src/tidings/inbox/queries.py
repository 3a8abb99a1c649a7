"""The inbox's two hot reads as SQL: a page of a reader's inbox and its counts, both over one bounded window.

The window is a reader's inbox: the newest `cap` items among the entries of the reader's channels (their user,
roles, topics and broadcast). Each channel contributes a backward range scan of the (channel, seq) primary key
stopped at `cap` rows; the branches merge by seq and duplicates (an event reaching a reader through two
channels) collapse. On PostgreSQL this is a lazy Merge Append: a page pulls only as many index entries as it
needs, a count at most `cap` per channel, whatever the tables hold.

Lower bounds that select a prefix of the window (everything newer than a cursor: `seq > low`) are pushed into
every branch. That is exact — the newest `cap` rows above `low` are the window's rows above `low` — and makes a
count of a user who read everything almost free. The page cursor (`seq < before`) selects a suffix and so
filters the merged window instead (pushing it down would slide the window past `cap`).

Each statement is one round trip: the reader's cursors are scalar subqueries, not a query of their own, so a
read in autocommit mode still sees one snapshot. Statements are built once per shape (number of channels and
which filters) with bound parameters — building a statement costs more than running it — see `page_statement`.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.selectable import Subquery

from tidings.inbox.tables import inbox_cursors, inbox_entries, inbox_items, inbox_marks

__all__ = ["ITEM_COLUMNS", "channel_params", "counts_statement", "page_statement"]

e, i, m, c = inbox_entries, inbox_items, inbox_marks, inbox_cursors

ITEM_COLUMNS = (
    i.c.seq, i.c.event_id, i.c.type, i.c.title, i.c.body, i.c.url, i.c.icon, i.c.category, i.c.data,
    i.c.scope, i.c.critical, i.c.occurred_at, i.c.created_at,
)  # fmt: skip

_USER = bindparam("user", type_=m.c.user_id.type)
_CAP = bindparam("cap", type_=Integer)


def channel_params(channels: tuple[str, ...]) -> dict[str, str]:
    return {f"ch{k}": channel for k, channel in enumerate(channels)}


def _cursor(*names: str) -> ColumnElement[int]:
    """The greatest of the reader's cursor columns `names` (0 when they never moved them): a scalar subquery.

    One subquery per use, not one per column: PostgreSQL runs each as an InitPlan (a primary-key probe).
    """
    cols = [c.c[name] for name in names]
    value: ColumnElement[int] = cols[0]
    for col in cols[1:]:
        value = case((col > value, col), else_=value)  # GREATEST on PostgreSQL, max(a, b) on SQLite: both
    return func.coalesce(select(value).where(c.c.user_id == _USER).scalar_subquery(), literal(0))


def _branches(columns: tuple[str, ...], n_channels: int, low: ColumnElement[int]) -> Subquery:
    branches = []
    for k in range(n_channels):
        scan = (
            select(*(e.c[name] for name in columns))
            .where(e.c.channel == bindparam(f"ch{k}", type_=e.c.channel.type), e.c.seq > low)
            .order_by(e.c.seq.desc())
            .limit(_CAP)
            .subquery()
        )
        branches.append(select(scan))
    return union_all(*branches).subquery("merged") if n_channels > 1 else branches[0].subquery("merged")


def _window(n_channels: int, low: ColumnElement[int]) -> Subquery:
    """The newest `cap` distinct items on the reader's channels with seq > low, newest first: seq and the
    item's category, scope and critical flag, all from the entries' covering index.

    Duplicates collapse by GROUP BY seq (the copies of one item's columns are equal): unlike DISTINCT over all
    four columns it keeps the merge's order, so PostgreSQL still stops after `cap` rows.
    """
    merged = _branches(("seq", "category", "scope", "critical"), n_channels, low)
    return (
        select(
            merged.c.seq,
            func.min(merged.c.category).label("category"),
            func.min(merged.c.scope).label("scope"),
            func.max(cast(merged.c.critical, Integer)).label("critical"),
        )
        .group_by(merged.c.seq)
        .order_by(merged.c.seq.desc())
        .limit(_CAP)
        .subquery("w")
    )


def _marks_of(w: Subquery) -> ColumnElement[bool]:
    return and_(m.c.user_id == _USER, m.c.seq == w.c.seq)


def _not_muted(w: Subquery) -> ColumnElement[bool]:
    """Items of an excluded (muted) scope are left out unless critical. A muted name matches an item's scope or
    its type (muting `message.new` silences every conversation's messages, as on streams and pushes); the type
    is looked up in the items (a primary-key probe) only for a row whose scope did not match already."""
    scopes: BindParameter[Any] = bindparam("scopes", expanding=True)
    typed = select(i.c.seq).where(i.c.seq == w.c.seq, i.c.type.in_(scopes)).exists()
    return or_(w.c.critical == 1, w.c.scope.is_(None), and_(w.c.scope.not_in(scopes), ~typed))


@functools.cache
def page_statement(
    n_channels: int, *, after: bool, unread_only: bool, category: bool, archived: bool, muted: bool
) -> Select[Any]:
    """A page: item columns plus the reader's `is_seen`, `is_read`, `is_archived`, newest first, `:limit` rows.

    Parameters: user, cap, limit, ch0..chN-1, and `before` / `category` / `scopes` when their flag is set.
    The page is chosen from the window and the reader's marks alone (filters use the entries' copies of
    category and scope); only its `limit` rows are then joined to their items.
    """
    seen_upto, read_upto, archived_upto = _cursor("seen_upto"), _cursor("read_upto"), _cursor("archived_upto")
    low: ColumnElement[int] = literal(0)
    if not archived:  # archived-by-cursor items leave the default listing; read ones an unread-only one
        low = _cursor("archived_upto", "read_upto") if unread_only else _cursor("archived_upto")
    w = _window(n_channels, low)
    read = or_(w.c.seq <= read_upto, m.c.read_at.is_not(None))
    is_archived = or_(w.c.seq <= archived_upto, m.c.archived_at.is_not(None))
    chosen = (
        select(
            w.c.seq,
            or_(w.c.seq <= seen_upto, m.c.seen_at.is_not(None), read).label("is_seen"),
            read.label("is_read"),
            is_archived.label("is_archived"),
        )
        .select_from(w.outerjoin(m, _marks_of(w)))
        .where(is_archived if archived else m.c.archived_at.is_(None))
        .order_by(w.c.seq.desc())
        .limit(bindparam("limit", type_=Integer))
    )
    if after:
        chosen = chosen.where(w.c.seq < bindparam("before", type_=Integer))
    if unread_only:
        chosen = chosen.where(w.c.seq > read_upto, m.c.read_at.is_(None))
    if category:
        chosen = chosen.where(w.c.category == bindparam("category", type_=i.c.category.type))
    if muted:
        chosen = chosen.where(_not_muted(w))
    page = chosen.subquery("page")
    return (
        select(*ITEM_COLUMNS, page.c.is_seen, page.c.is_read, page.c.is_archived)
        .select_from(page.join(i, i.c.seq == page.c.seq))
        .order_by(page.c.seq.desc())
    )


@functools.cache
def counts_statement(n_channels: int, *, muted: bool) -> Select[Any]:
    """(category, unread, unseen) rows over the window's unread, unarchived items. Parameters as a page's.

    The reader's marks are tested with NOT IN (subquery), which PostgreSQL runs as a hashed subplan built
    once from the reader's few marks; a join would let a generic plan probe the marks once per window row.
    """
    # Read implies seen (marking read moves both), so every unseen item is unread: only seq > read_upto counts.
    w = _window(n_channels, _cursor("read_upto", "archived_upto"))
    done = select(m.c.seq).where(
        m.c.user_id == _USER, or_(m.c.read_at.is_not(None), m.c.archived_at.is_not(None))
    )
    seen = select(m.c.seq).where(m.c.user_id == _USER, m.c.seen_at.is_not(None))
    unseen = case((and_(w.c.seq > _cursor("seen_upto"), w.c.seq.not_in(seen)), literal(1)), else_=literal(0))
    stmt = (
        select(w.c.category, func.count().label("unread"), func.sum(unseen).label("unseen"))
        .where(w.c.seq.not_in(done))
        .group_by(w.c.category)
    )
    if muted:
        stmt = stmt.where(_not_muted(w))
    return stmt
