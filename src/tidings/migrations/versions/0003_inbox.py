"""inbox: inbox_items, inbox_entries, inbox_marks, inbox_cursors

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "inbox_items",
        sa.Column("seq", _SEQ, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("title", sa.String(256), nullable=False),
        sa.Column("body", sa.String(4096), nullable=False),
        sa.Column("url", sa.String(2048), nullable=True),
        sa.Column("icon", sa.String(2048), nullable=True),
        sa.Column("category", sa.String(64), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("scope", sa.String(256), nullable=True),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.Column("occurred_at", _TS, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_inbox_items"),
        sqlite_autoincrement=True,  # seqs are cursors: a deleted highest seq must never come back
    )
    op.create_index("ix_inbox_items_created_at", "inbox_items", ["created_at"])

    op.create_table(
        "inbox_entries",
        sa.Column("channel", sa.String(260), nullable=False),
        sa.Column("seq", _SEQ, autoincrement=False, nullable=False),
        sa.Column("category", sa.String(64), nullable=True),
        sa.Column("scope", sa.String(256), nullable=True),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["seq"], ["inbox_items.seq"], name="fk_inbox_entries_seq_inbox_items", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint(
            "channel", "seq", name="pk_inbox_entries", postgresql_include=["category", "scope", "critical"]
        ),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_inbox_entries_seq", "inbox_entries", ["seq"])

    op.create_table(
        "inbox_marks",
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("seq", _SEQ, autoincrement=False, nullable=False),
        sa.Column("seen_at", _TS, nullable=True),
        sa.Column("read_at", _TS, nullable=True),
        sa.Column("archived_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["seq"], ["inbox_items.seq"], name="fk_inbox_marks_seq_inbox_items", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "seq", name="pk_inbox_marks"),
    )
    op.create_index("ix_inbox_marks_seq_user_id", "inbox_marks", ["seq", "user_id"])

    op.create_table(
        "inbox_cursors",
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("seen_upto", _SEQ, nullable=False),
        sa.Column("read_upto", _SEQ, nullable=False),
        sa.Column("archived_upto", _SEQ, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_inbox_cursors"),
    )
    op.create_index("ix_inbox_cursors_updated_at", "inbox_cursors", ["updated_at"])


def downgrade() -> None:
    op.drop_table("inbox_cursors")
    op.drop_table("inbox_marks")
    op.drop_table("inbox_entries")
    op.drop_table("inbox_items")
