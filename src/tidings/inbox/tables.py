"""SQL tables of the notification inbox, declared on the shared `tidings.db.metadata`.

Four tables, each for one reason:

- `inbox_items` — the content of one inbox item, stored ONCE per event whatever its audience. `seq` is the
  order (newest first = highest seq), the public item id and the unit of the read cursors, so it must never be
  reused: AUTOINCREMENT on SQLite (plain INTEGER PRIMARY KEY reuses the highest id after a delete), a sequence
  on PostgreSQL.
- `inbox_entries` — who an item is for: one small row per audience channel, named like the bus channels
  (`u:<user>`, `r:<role>`, `t:<topic>`, `*`). An event to users a, b and role admin is one item and three
  entries; a role-wide or broadcast item is one item and one entry, merged into each member's inbox at read
  time. The primary key (channel, seq) is the hot index: a reader's inbox is a merge of a few backward range
  scans on it, one per channel the reader holds. Entries repeat the item's category, scope and critical flag
  (and the index carries them) so counting an inbox never visits the items.
- `inbox_marks` — per-user state of single items (seen / read / archived timestamps), written only for items
  a user acted on one by one.
- `inbox_cursors` — one row per user: everything with seq <= read_upto is read (likewise seen, archived). "Mark
  all read" moves the cursor: one row whatever the inbox holds.

Deleting an item (retention) cascades to its entries and marks; both carry an index on `seq` for that.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
)

from tidings.db import metadata
from tidings.registry.tables import UtcDateTime

__all__ = ["inbox_cursors", "inbox_entries", "inbox_items", "inbox_marks"]

# BIGINT on PostgreSQL; on SQLite only "INTEGER PRIMARY KEY" is the rowid (and can AUTOINCREMENT).
Seq = BigInteger().with_variant(Integer(), "sqlite")

MAX_CHANNEL = 260  # "r:" + a 256-character name

inbox_items = Table(
    "inbox_items",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("type", String(128), nullable=False),
    Column("title", String(256), nullable=False),
    Column("body", String(4096), nullable=False),
    Column("url", String(2048), nullable=True),
    Column("icon", String(2048), nullable=True),
    Column("category", String(64), nullable=True),
    Column("data", JSON(), nullable=True),
    # The policy scope the event was published under; a muted scope does not raise the unread count unless
    # the item is critical (the store takes the muted scopes as a parameter; policy decides which they are).
    Column("scope", String(256), nullable=True),
    Column("critical", Boolean(), nullable=False),
    Column("occurred_at", UtcDateTime(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Index("ix_inbox_items_created_at", "created_at"),  # retention deletes by age
    sqlite_autoincrement=True,
)

inbox_entries = Table(
    "inbox_entries",
    metadata,
    Column("channel", String(MAX_CHANNEL), nullable=False),
    Column("seq", Seq, ForeignKey("inbox_items.seq", ondelete="CASCADE"), nullable=False),
    # Copies of the item's columns that counting needs, so a count reads this index and nothing else.
    Column("category", String(64), nullable=True),
    Column("scope", String(256), nullable=True),
    Column("critical", Boolean(), nullable=False),
    # Covering on PostgreSQL (INCLUDE: index-only scans); clustered on SQLite (WITHOUT ROWID) to the same end.
    PrimaryKeyConstraint("channel", "seq", postgresql_include=["category", "scope", "critical"]),
    Index("ix_inbox_entries_seq", "seq"),  # the cascade from inbox_items, and orphan checks after capping
    sqlite_with_rowid=False,
)

inbox_marks = Table(
    "inbox_marks",
    metadata,
    Column("user_id", String(256), primary_key=True),
    Column(
        "seq", Seq, ForeignKey("inbox_items.seq", ondelete="CASCADE"), primary_key=True, autoincrement=False
    ),
    Column("seen_at", UtcDateTime(), nullable=True),
    Column("read_at", UtcDateTime(), nullable=True),
    Column("archived_at", UtcDateTime(), nullable=True),
    # The cascade from inbox_items; with user_id too, so a probe for (seq, user) that a plan makes through it
    # stays one entry even on a role-wide item thousands of members marked.
    Index("ix_inbox_marks_seq_user_id", "seq", "user_id"),
)

inbox_cursors = Table(
    "inbox_cursors",
    metadata,
    Column("user_id", String(256), primary_key=True),
    Column("seen_upto", Seq, nullable=False),
    Column("read_upto", Seq, nullable=False),
    Column("archived_upto", Seq, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_inbox_cursors_updated_at", "updated_at"),  # retention forgets cursors nobody moved for long
)
