"""The delivery log: one row per push attempt per device — the answer to "why didn't my phone buzz?".

Rows are written in one INSERT per job (executemany, which SQLAlchemy 2 sends as multi-row VALUES), never one
statement per device, and pruned after `delivery_log_retention_days`. The table itself is declared with the
registry's tables (`tidings.registry.tables.deliveries`) so one Alembic history covers the whole schema.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tidings.db import write_tx
from tidings.registry.tables import deliveries

MAX_LIMIT = 1000
_REASON_MAX = 256  # the column's width; provider reasons can be long exception texts


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One attempt to one device (device_id is None for a job-level failure before any device was known)."""

    event_id: str
    device_id: str | None
    user_id: str | None
    provider: str
    outcome: str
    reason: str
    status: int | None
    attempt: int
    latency_ms: float | None
    created_at: float  # epoch seconds

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: created_at as an ISO-8601 UTC string."""
        out = asdict(self)
        out["created_at"] = datetime.fromtimestamp(self.created_at, UTC).isoformat()
        return out


class DeliveryLog:
    """Writes, queries and prunes the `deliveries` table."""

    def __init__(
        self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time, retention_days: int = 7
    ) -> None:
        self._engine = engine
        self._clock = clock
        self.retention_days = retention_days

    def __repr__(self) -> str:
        return f"<DeliveryLog {self._engine.url.render_as_string(hide_password=True)!r}>"

    async def record(self, rows: Sequence[DeliveryRecord]) -> None:
        """Insert a job's rows in one statement."""
        if not rows:
            return
        values = [
            {
                "event_id": r.event_id,
                "device_id": r.device_id,
                "user_id": r.user_id,
                "provider": r.provider,
                "outcome": r.outcome,
                "reason": r.reason[:_REASON_MAX],
                "status": r.status,
                "attempt": r.attempt,
                "latency_ms": r.latency_ms,
                "created_at": datetime.fromtimestamp(r.created_at, UTC),
            }
            for r in rows
        ]
        async with write_tx(self._engine) as conn:
            await conn.execute(insert(deliveries), values)

    async def query(
        self, *, event_id: str | None = None, user_id: str | None = None, limit: int = 100
    ) -> list[DeliveryRecord]:
        """Newest first, filtered by event and/or user; `limit` is clamped to 1..1000."""
        stmt = select(deliveries).order_by(deliveries.c.created_at.desc(), deliveries.c.id.desc())
        if event_id is not None:
            stmt = stmt.where(deliveries.c.event_id == event_id)
        if user_id is not None:
            stmt = stmt.where(deliveries.c.user_id == user_id)
        stmt = stmt.limit(max(1, min(limit, MAX_LIMIT)))
        async with self._engine.connect() as conn:
            result = await conn.execute(stmt)
            rows = result.mappings().all()
        return [
            DeliveryRecord(
                event_id=row["event_id"],
                device_id=row["device_id"],
                user_id=row["user_id"],
                provider=row["provider"],
                outcome=row["outcome"],
                reason=row["reason"],
                status=row["status"],
                attempt=row["attempt"],
                latency_ms=row["latency_ms"],
                created_at=row["created_at"].timestamp(),
            )
            for row in rows
        ]

    async def prune(self) -> int:
        """Delete rows older than the retention period; returns how many went."""
        cutoff = datetime.fromtimestamp(self._clock() - self.retention_days * 86_400, UTC)
        async with write_tx(self._engine) as conn:
            result = await conn.execute(delete(deliveries).where(deliveries.c.created_at < cutoff))
        return int(result.rowcount or 0)
