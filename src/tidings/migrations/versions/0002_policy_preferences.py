"""user_preferences and held_pushes (delivery policy)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "user_preferences",
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_user_preferences"),
    )

    op.create_table(
        "held_pushes",
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("scope", sa.String(128), nullable=False),
        sa.Column("release_at", _TS, nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("event_order", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("replaced_ids", sa.Text(), nullable=False),
        sa.Column("first_held_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("claim_id", sa.String(32), nullable=True),
        sa.Column("claimed_until", _TS, nullable=True),
        sa.PrimaryKeyConstraint("user_id", "scope", name="pk_held_pushes"),
    )
    op.create_index("ix_held_pushes_release_at", "held_pushes", ["release_at"])


def downgrade() -> None:
    op.drop_table("held_pushes")
    op.drop_table("user_preferences")
