"""SQL tables of the registry and of the delivery log, declared once on the shared `tidings.db.metadata`.

Alembic's `check` compares these declarations with the shipped migrations, so every table the package uses
lives here (the delivery log's table too, although another module writes it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    TypeDecorator,
    UniqueConstraint,
)

from tidings.db import metadata

__all__ = ["UtcDateTime", "deliveries", "device_channels", "devices"]


class UtcDateTime(TypeDecorator[datetime]):
    """timestamptz on PostgreSQL; on SQLite (which has no time zones) naive UTC text that sorts correctly.

    Values always come back timezone-aware in UTC, whatever the backend.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


devices = Table(
    "devices",
    metadata,
    Column("id", String(32), primary_key=True),  # uuid4 hex: not guessable, not sequential
    Column("user_id", String(256), nullable=False),
    Column("provider", String(16), nullable=False),
    Column("platform", String(16), nullable=False),
    # APNs hex token, FCM registration token, or the Web Push endpoint URL.
    Column("token", String(4096), nullable=False),
    # sha256 hex of the token. The uniqueness and lookups go through it because a 4 KB token does not fit in a
    # PostgreSQL btree entry (max ~2.7 KB) and long keys make every index probe slower.
    Column("token_hash", String(64), nullable=False),
    Column("p256dh", String(128), nullable=True),
    Column("auth", String(64), nullable=True),
    Column("environment", String(16), nullable=True),
    Column("app_id", String(256), nullable=True),
    Column("name", String(128), nullable=True),
    Column("locale", String(35), nullable=True),
    Column("timezone", String(64), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("last_seen_at", UtcDateTime(), nullable=False),
    Column("last_used_at", UtcDateTime(), nullable=True),
    Column("disabled_at", UtcDateTime(), nullable=True),
    Column("disabled_reason", String(256), nullable=True),
    # The upsert's conflict target: one row per token and provider, whoever owns it.
    UniqueConstraint("provider", "token_hash"),
    Index("ix_devices_user_id", "user_id"),
    Index("ix_devices_last_seen_at", "last_seen_at"),
    Index("ix_devices_disabled_at", "disabled_at"),
)

# How a device is reached besides its owner: "role:<name>" recorded from the owner's JWT at registration, and
# "topic:<name>" declared by the client. Rows are replaced on every registration (an owner change drops them).
device_channels = Table(
    "device_channels",
    metadata,
    Column(
        "device_id",
        String(32),
        ForeignKey("devices.id", ondelete="CASCADE", onupdate="CASCADE"),  # id rotates on owner change
        primary_key=True,
    ),
    Column("channel", String(300), primary_key=True),
    Index("ix_device_channels_channel", "channel"),
)

# Written by the delivery log (tidings.delivery.log); one row per push attempt outcome.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("device_id", String(64), nullable=True),
    Column("user_id", String(256), nullable=True),
    Column("provider", String(16), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason", String(256), nullable=False, default=""),
    Column("status", Integer(), nullable=True),
    Column("attempt", Integer(), nullable=False, default=1),
    Column("latency_ms", Float(), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Index("ix_deliveries_event_id", "event_id"),
    Index("ix_deliveries_device_id", "device_id"),
    Index("ix_deliveries_user_id", "user_id"),
    Index("ix_deliveries_created_at", "created_at"),
)
