"""HeldStore: alert pushes held during quiet hours, in SQL (held_pushes), released coalesced per (user, scope).

One row per (user, scope). `hold` is one atomic upsert, so concurrent holds of one user and scope coalesce into
the row instead of racing: the row keeps the latest push (by event order, so a late upsert of an older event
cannot replace a newer one), the count of pushes it stands for, and the ids of the most recent ones it
replaces (at most MAX_REPLACED_IDS). Rows live in the database, so held pushes survive a worker restart in
embedded mode (SQLite) as with PostgreSQL.

Release is claim-then-ack, at least once: `claim_due(now, limit)` hands each due row to exactly one caller for
a lease (PostgreSQL: `UPDATE ... WHERE (user_id, scope) IN (SELECT ... FOR UPDATE SKIP LOCKED)`; SQLite: the
same statement under the single-writer lock of BEGIN IMMEDIATE); the caller enqueues the one coalesced push,
then `ack`s, which deletes the row — or `defer`s it, count kept, when deciding again at release finds the user
still quiet (they travelled). A caller that dies before `ack` loses the lease and another takes the row.
A hold arriving while a row's claim is live starts the row afresh (the claimed batch is already on its way);
`ack` then leaves the fresh row alone, because the claim it names is gone.

For the integrator, one release round: `for held in await store.claim_due(now)`: decide() again with the
user's current preferences and presence (not critical, mode alert); SEND → enqueue `held.payload` noting
`held.count`/`held.replaced_ids` and log reason `quiet_hours_released`, then `ack`; HOLD → `defer(held,
decision.release_at)`; SKIP/DROP → log that reason and `ack`.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Row, bindparam, delete, func, or_, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from tidings.clock import Clock, system_clock
from tidings.db import write_tx
from tidings.policy.tables import held_pushes

__all__ = ["MAX_PAYLOAD_BYTES", "MAX_REPLACED_IDS", "Held", "HeldStore", "event_order"]

MAX_REPLACED_IDS = 50  # ids kept per row; `count` keeps counting past it
MAX_PAYLOAD_BYTES = 64 * 1024  # a push job is a few KB (data ≤ max_data_bytes); this bounds a row

_T = held_pushes.c
_RETURNED = (_T.user_id, _T.scope, _T.event_id, _T.payload, _T.count, _T.replaced_ids, _T.first_held_at,
             _T.release_at, _T.claim_id)  # fmt: skip


def event_order(event_id: str) -> int:
    """A sortable integer of an event id `<ms>-<seq>`: ms * 1,000,000 + seq."""
    ms, _, seq = event_id.partition("-")
    if not (ms.isdigit() and seq.isdigit()):
        raise ValueError(f"not an event id <ms>-<seq>: {event_id[:64]!r}")
    return int(ms) * 1_000_000 + int(seq)


@dataclass(frozen=True, slots=True)
class Held:
    """A claimed row: the push to release (the latest held) and what it stands for."""

    user_id: str
    scope: str
    event_id: str
    payload: Any  # the job payload given to hold(), decoded from JSON
    count: int  # pushes this row stands for, the released one included
    replaced_ids: tuple[
        str, ...
    ]  # the most recent ids among those replaced (≤ MAX_REPLACED_IDS), oldest first
    first_held_at: float
    release_at: float
    claim_id: str

    @property
    def replaced(self) -> int:
        """How many held pushes the released one replaces."""
        return self.count - 1


def _held(row: Row[Any] | tuple[Any, ...]) -> Held:
    user_id, scope, event_id, payload, count, replaced, first, release, claim = tuple(row)
    return Held(user_id, scope, event_id, orjson.loads(payload), count, tuple(orjson.loads(replaced)),
                first.timestamp(), release.timestamp(), claim)  # fmt: skip


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class HeldStore:
    """Held pushes in SQL. Time comes from `clock` (epoch seconds); `lease_seconds` bounds a claim."""

    def __init__(
        self, engine: AsyncEngine, *, clock: Clock = system_clock, lease_seconds: float = 60.0
    ) -> None:
        self.engine = engine
        self._clock = clock
        self.lease_seconds = lease_seconds

    async def hold(
        self,
        user_id: str,
        scope: str,
        *,
        event_id: str,
        payload: Any,
        release_at: float,
        order: int | None = None,
    ) -> int:
        """Hold a push until `release_at`, coalescing with what is held for (user, scope); returns the count.

        `payload` is the job to release, JSON-serialisable (bytes of JSON are stored as they are); `order`
        ranks pushes (default: from the event id); the highest is the one released. The row's release time
        becomes this hold's `release_at` (the latest decision, e.g. in the user's new zone).
        """
        encoded = payload.decode() if isinstance(payload, bytes) else orjson.dumps(payload).decode()
        if len(encoded) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"held payload over {MAX_PAYLOAD_BYTES} bytes")
        now = _utc(self._clock())
        values = {
            "user_id": user_id, "scope": scope, "release_at": _utc(release_at), "event_id": event_id,
            "event_order": event_order(event_id) if order is None else order, "payload": encoded, "count": 1,
            "replaced_ids": "[]", "first_held_at": now, "updated_at": now, "claim_id": None, "claimed_until": None,
        }  # fmt: skip
        async with write_tx(self.engine) as conn:
            return int((await conn.execute(self._upsert, values)).scalar_one())

    async def claim_due(self, now: float | None = None, limit: int = 100) -> list[Held]:
        """Take up to `limit` rows due at `now` for `lease_seconds`; each due row goes to exactly one caller."""
        at = self._clock() if now is None else now
        params = {
            "now": _utc(at), "until": _utc(at + self.lease_seconds), "claim": uuid.uuid4().hex, "limit": limit,
        }  # fmt: skip
        async with write_tx(self.engine) as conn:
            rows = (await conn.execute(self._claim, params)).all()
        return sorted(
            (_held(row) for row in rows), key=lambda held: (held.release_at, held.user_id, held.scope)
        )

    async def ack(self, released: Iterable[Held]) -> int:
        """Delete the rows these claims released (unless held afresh meanwhile); returns rows deleted."""
        keys = [(held.user_id, held.scope, held.claim_id) for held in released]
        if not keys:
            return 0
        stmt = delete(held_pushes).where(tuple_(_T.user_id, _T.scope, _T.claim_id).in_(keys))
        async with write_tx(self.engine) as conn:
            result = await conn.execute(stmt)
        return result.rowcount or 0

    async def defer(self, held: Held, release_at: float) -> bool:
        """Hand a claimed row back, due at `release_at`, its count and ids kept (deciding again at release
        found the user quiet still, e.g. after travelling). False when the claim is no longer this caller's."""
        stmt = (
            update(held_pushes)
            .where(_T.user_id == held.user_id, _T.scope == held.scope, _T.claim_id == held.claim_id)
            .values(release_at=_utc(release_at), claim_id=None, claimed_until=None)
        )
        async with write_tx(self.engine) as conn:
            result = await conn.execute(stmt)
        return bool(result.rowcount)

    async def wake(self, user_id: str, now: float | None = None) -> int:
        """Make the user's held rows due now (their quiet hours or zone changed): the worker decides again."""
        at = _utc(self._clock() if now is None else now)
        stmt = (
            update(held_pushes)
            .where(_T.user_id == user_id, _T.release_at > at, _T.claim_id.is_(None))
            .values(release_at=at)
        )
        async with write_tx(self.engine) as conn:
            result = await conn.execute(stmt)
        return result.rowcount or 0

    async def pending(self, user_id: str | None = None) -> list[Held]:
        """Rows held now (all, or one user's), by release time — for operators and tests."""
        stmt = select(*_RETURNED).order_by(_T.release_at, _T.user_id, _T.scope)
        if user_id is not None:
            stmt = stmt.where(_T.user_id == user_id)
        async with self.engine.connect() as conn:
            return [_held(row) for row in await conn.execute(stmt)]

    async def count(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(held_pushes))).scalar_one())

    # --- statements (built once) ----------------------------------------------------------------------------

    @functools.cached_property
    def _postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @functools.cached_property
    def _upsert(self) -> Any:
        ins = (postgresql if self._postgres else sqlite).insert(held_pushes)
        t, new = "held_pushes", "excluded"
        live_claim = f"({t}.claim_id IS NOT NULL AND {t}.claimed_until > {new}.updated_at)"
        newer = f"({new}.event_order >= {t}.event_order)"

        def pick(column: str) -> Any:  # the newer push's value; a row under a live claim starts afresh
            return text(f"CASE WHEN {live_claim} OR {newer} THEN {new}.{column} ELSE {t}.{column} END")

        displaced = f"(CASE WHEN {newer} THEN {t}.event_id ELSE {new}.event_id END)"
        if self._postgres:
            ids = f"{t}.replaced_ids::jsonb"
            kept = (
                f"(CASE WHEN jsonb_array_length({ids}) >= {MAX_REPLACED_IDS} THEN {ids} - 0 ELSE {ids} END)"
            )
            appended = f"({kept} || to_jsonb({displaced}::text))::text"
        else:
            ids = f"{t}.replaced_ids"
            full = f"json_array_length({ids}) >= {MAX_REPLACED_IDS}"
            kept = f"CASE WHEN {full} THEN json_remove({ids}, '$[0]') ELSE {ids} END"
            appended = f"json_insert({kept}, '$[#]', {displaced})"
        set_ = {
            "event_id": pick("event_id"),
            "event_order": pick("event_order"),
            "payload": pick("payload"),
            "count": text(f"CASE WHEN {live_claim} THEN 1 ELSE {t}.count + 1 END"),
            "replaced_ids": text(f"CASE WHEN {live_claim} THEN '[]' ELSE {appended} END"),
            "first_held_at": text(
                f"CASE WHEN {live_claim} THEN {new}.first_held_at ELSE {t}.first_held_at END"
            ),
            "release_at": ins.excluded.release_at,
            "updated_at": ins.excluded.updated_at,
            "claim_id": None,
            "claimed_until": None,
        }
        return ins.on_conflict_do_update(index_elements=[_T.user_id, _T.scope], set_=set_).returning(_T.count)

    @functools.cached_property
    def _claim(self) -> Any:
        now = bindparam("now", type_=held_pushes.c.release_at.type)
        due = (
            select(_T.user_id, _T.scope)
            .where(_T.release_at <= now, or_(_T.claimed_until.is_(None), _T.claimed_until <= now))
            .order_by(_T.release_at)
            .limit(bindparam("limit"))
            .with_for_update(skip_locked=True)  # SQLite renders nothing: BEGIN IMMEDIATE serialises claimers
        )
        return (
            update(held_pushes)
            .where(tuple_(_T.user_id, _T.scope).in_(due))
            .values(
                claim_id=bindparam("claim"), claimed_until=bindparam("until", type_=_T.claimed_until.type)
            )
            .returning(*_RETURNED)
        )
