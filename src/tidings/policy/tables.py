"""SQL tables of the delivery policy, declared on the shared `tidings.db.metadata` (migration 0002).

- `user_preferences`: one row per user holding the whole preference document as JSON text. A user's
  preferences are read and written as one document (GET/PUT/PATCH), so one row keeps every write a single
  row lock and every batch read (an audience of 1,000 users) one index probe per user.
- `held_pushes`: alert pushes held during a user's quiet hours, one row per (user, scope), coalesced in place.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from tidings.db import metadata
from tidings.registry.tables import UtcDateTime

__all__ = ["held_pushes", "user_preferences"]

user_preferences = Table(
    "user_preferences",
    metadata,
    Column("user_id", String(256), primary_key=True),
    # The validated Preferences as compact JSON (pydantic's JSON mode, unset fields left out).
    Column("document", Text(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

held_pushes = Table(
    "held_pushes",
    metadata,
    Column("user_id", String(256), primary_key=True),
    Column("scope", String(128), primary_key=True),
    Column("release_at", UtcDateTime(), nullable=False),
    # The latest held push: its event id, its ordering key (ms * 1e6 + seq of the id, so a late upsert of an
    # older event cannot replace a newer one) and the job payload to release, as JSON text.
    Column("event_id", String(64), nullable=False),
    Column("event_order", BigInteger(), nullable=False),
    Column("payload", Text(), nullable=False),
    # How many pushes the row stands for, and the ids of the most recent ones it replaces (a bounded JSON list).
    Column("count", Integer(), nullable=False),
    Column("replaced_ids", Text(), nullable=False),
    Column("first_held_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    # A worker's claim: the row is that worker's until claimed_until, then anyone's again (at-least-once).
    Column("claim_id", String(32), nullable=True),
    Column("claimed_until", UtcDateTime(), nullable=True),
    Index("ix_held_pushes_release_at", "release_at"),
)
