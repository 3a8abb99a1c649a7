"""DeviceStore: the devices table behind one small async API (for the HTTP API, the CLI and the push worker).

Push audience — how an event's `to` reaches a device:
- `users`: every active device owned by one of the users;
- `roles`: devices whose owner's JWT carried the role when the device was registered (recorded per device,
  so a role granted later reaches the device at its next registration);
- `topics`: devices whose client declared the topic in its registration (`topics` on POST /v1/devices);
- `broadcast`: every active device.
Disabled devices (dead tokens) are never returned for delivery.

Concurrency: registration is one `INSERT ... ON CONFLICT (provider, token_hash) DO UPDATE ... RETURNING`, so
concurrent registrations of one token serialise on the row (PostgreSQL) or the database write lock (SQLite)
instead of racing a read against a write. A token that changes owner gets a new id, a new created_at and no
channel rows of the previous owner: to the new owner it is a new device, and the previous owner's pushes stop.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, case, delete, false, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from tidings.db import write_tx
from tidings.registry.device import (
    MAX_USER_ID,
    Device,
    PruneReport,
    normalise_token,
    token_hash,
    valid_user_id,
)
from tidings.registry.tables import device_channels, devices
from tidings.registry.validation import DeviceIn

__all__ = ["Device", "DeviceStore", "PruneReport", "normalise_token", "token_hash", "valid_user_id"]

MAX_CHANNEL_NAME = 256


def _channel_ok(name: str) -> bool:
    return 0 < len(name) <= MAX_CHANNEL_NAME and "\x00" not in name


_DEVICE_FIELDS = tuple(f.name for f in fields(Device))
_DEVICE_COLUMNS = tuple(devices.c[name] for name in _DEVICE_FIELDS)
# Replaced by every registration (the client sends its device's current description).
_REFRESHED = ("user_id", "platform", "token", "p256dh", "auth", "environment", "app_id", "name", "locale",
              "timezone", "updated_at", "last_seen_at")  # fmt: skip
# Kept while the owner stays the same; reset when the token changes hands.
_KEPT_FOR_OWNER = ("id", "created_at", "last_used_at")


def _device(row: Row[Any]) -> Device:
    # Every query selects _DEVICE_COLUMNS, in the dataclass's field order: positional is the cheap path.
    values: tuple[Any, ...] = tuple(row)
    return Device(*values)


class DeviceStore:
    """Devices in SQL. Time comes from `clock` (epoch seconds) so tests can move it."""

    def __init__(
        self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time, ttl_days: int = 90
    ) -> None:
        self.engine = engine
        self._clock = clock
        self.ttl_days = ttl_days

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # --- writes ------------------------------------------------------------------------------------------

    async def register(
        self,
        user_id: str,
        device: DeviceIn,
        *,
        roles: Iterable[str] = (),
        topics: Iterable[str] = (),
    ) -> tuple[Device, bool]:
        """Upsert by (provider, token); refreshes last_seen_at and re-enables a disabled token.

        Returns (device, created): created is True when the device is new to `user_id`, i.e. inserted, or moved
        from another owner (it then gets a new id). Channels (roles, topics) are replaced by this registration's.
        """
        if device.token is None:  # DeviceIn guarantees it; this keeps the type checker and callers honest
            raise ValueError("device has no token")
        if not valid_user_id(user_id):
            raise ValueError(f"user id must be 1-{MAX_USER_ID} characters without NUL")
        now = self._now()
        new_id = uuid.uuid4().hex
        token = normalise_token(device.provider, device.token)
        values = {
            "id": new_id, "user_id": user_id, "provider": device.provider, "platform": device.platform,
            "token": token, "token_hash": token_hash(device.provider, token), "p256dh": device.p256dh,
            "auth": device.auth, "environment": device.environment, "app_id": device.app_id,
            "name": device.name, "locale": device.locale, "timezone": device.timezone, "created_at": now,
            "updated_at": now, "last_seen_at": now, "last_used_at": None, "disabled_at": None,
            "disabled_reason": None,
        }  # fmt: skip
        # Roles come from the JWT; one that cannot be stored cannot be addressed either, so it is skipped.
        channels = {f"role:{r}" for r in roles if _channel_ok(r)}
        channels |= {f"topic:{t}" for t in (*device.topics, *topics) if _channel_ok(t)}
        async with write_tx(self.engine) as conn:
            row = (await conn.execute(self._upsert, values)).one()
            stored = _device(row)
            await conn.execute(delete(device_channels).where(device_channels.c.device_id == stored.id))
            if channels:
                await conn.execute(
                    device_channels.insert(),
                    [{"device_id": stored.id, "channel": c} for c in sorted(channels)],
                )
        return stored, stored.id == new_id

    @functools.cached_property
    def _upsert(self) -> Any:
        # Built once: constructing this statement costs more than running it; values are bound per call.
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        ins = dialect.insert(devices)
        same_owner = devices.c.user_id == ins.excluded.user_id
        set_: dict[str, Any] = {name: ins.excluded[name] for name in _REFRESHED}
        for name in _KEPT_FOR_OWNER:
            set_[name] = case((same_owner, devices.c[name]), else_=ins.excluded[name])
        set_["disabled_at"] = None
        set_["disabled_reason"] = None
        return ins.on_conflict_do_update(
            index_elements=[devices.c.provider, devices.c.token_hash], set_=set_
        ).returning(*_DEVICE_COLUMNS)

    async def remove(self, user_id: str, *, device_id: str | None = None, token: str | None = None) -> bool:
        """Delete one of the user's devices by id or token. False when it is missing or someone else's."""
        if (device_id is None) == (token is None):
            raise ValueError("pass exactly one of device_id or token")
        where = [devices.c.user_id == user_id]
        if device_id is not None:
            where.append(devices.c.id == device_id)
        else:
            assert token is not None
            apns = and_(devices.c.provider == "apns", devices.c.token_hash == token_hash("apns", token))
            other = and_(devices.c.provider != "apns", devices.c.token_hash == token_hash("fcm", token))
            where.append(or_(apns, other))
        async with write_tx(self.engine) as conn:
            result = await conn.execute(delete(devices).where(*where))
        return bool(result.rowcount)

    async def delete(self, device_id: str) -> bool:
        """Delete a device whoever owns it (operators)."""
        async with write_tx(self.engine) as conn:
            result = await conn.execute(delete(devices).where(devices.c.id == device_id))
        return bool(result.rowcount)

    async def disable(
        self, provider: str, token: str, reason: str, *, seen_before: float | None = None
    ) -> bool:
        """Stop pushing to a token the provider reported dead. False when unknown or already disabled.

        `seen_before` (epoch seconds: when the push was sent, or APNs's 410 timestamp) spares the device if it
        registered again after that moment: the app was reinstalled and its fresh registration wins.
        """
        where = [
            devices.c.provider == provider,
            devices.c.token_hash == token_hash(provider, token),
            devices.c.disabled_at.is_(None),
        ]
        if seen_before is not None:
            where.append(devices.c.last_seen_at <= datetime.fromtimestamp(seen_before, UTC))
        now = self._now()
        stmt = (
            update(devices)
            .where(*where)
            .values(disabled_at=now, disabled_reason=reason[:256], updated_at=now)
        )
        async with write_tx(self.engine) as conn:
            result = await conn.execute(stmt)
        return bool(result.rowcount)

    async def mark_used(self, device_ids: Sequence[str]) -> None:
        """Record a successful push on many devices in one statement."""
        if not device_ids:
            return
        stmt = update(devices).where(devices.c.id.in_(list(device_ids))).values(last_used_at=self._now())
        async with write_tx(self.engine) as conn:
            await conn.execute(stmt)

    async def prune(self) -> PruneReport:
        """Delete devices not registered within ttl_days, and rows disabled longer ago than that."""
        cutoff = self._now() - timedelta(days=self.ttl_days)
        async with write_tx(self.engine) as conn:
            disabled = await conn.execute(delete(devices).where(devices.c.disabled_at < cutoff))
            stale = await conn.execute(delete(devices).where(devices.c.last_seen_at < cutoff))
        return PruneReport(stale=stale.rowcount or 0, disabled=disabled.rowcount or 0)

    # --- reads -------------------------------------------------------------------------------------------

    async def _select(self, stmt: Any) -> list[Device]:
        async with self.engine.connect() as conn:
            return [_device(row) for row in await conn.execute(stmt)]

    async def count_active(self) -> dict[str, int]:
        """Active devices per provider (for the devices_active gauge)."""
        stmt = (
            select(devices.c.provider, func.count())
            .where(devices.c.disabled_at.is_(None))
            .group_by(devices.c.provider)
        )
        async with self.engine.connect() as conn:
            return {provider: count for provider, count in await conn.execute(stmt)}

    async def get(self, device_id: str) -> Device | None:
        found = await self._select(select(*_DEVICE_COLUMNS).where(devices.c.id == device_id))
        return found[0] if found else None

    async def list_for_user(self, user_id: str) -> list[Device]:
        """All the user's devices, disabled ones included, oldest first."""
        stmt = select(*_DEVICE_COLUMNS).where(devices.c.user_id == user_id)
        return await self._select(stmt.order_by(devices.c.created_at, devices.c.id))

    async def list_active(
        self, user_id: str, provider: str | None = None, platform: str | None = None
    ) -> list[Device]:
        stmt = select(*_DEVICE_COLUMNS).where(devices.c.user_id == user_id, devices.c.disabled_at.is_(None))
        if provider is not None:
            stmt = stmt.where(devices.c.provider == provider)
        if platform is not None:
            stmt = stmt.where(devices.c.platform == platform)
        return await self._select(stmt.order_by(devices.c.created_at, devices.c.id))

    async def list_active_for_audience(
        self,
        *,
        users: Sequence[str] = (),
        roles: Sequence[str] = (),
        topics: Sequence[str] = (),
        broadcast: bool = False,
    ) -> list[Device]:
        """Every active device an event addressed to this audience reaches (see the module docstring)."""
        stmt = select(*_DEVICE_COLUMNS).where(devices.c.disabled_at.is_(None))
        if not broadcast:
            channels = [f"role:{r}" for r in roles] + [f"topic:{t}" for t in topics]
            reach: list[ColumnElement[bool]] = [false()]
            if users:
                reach.append(devices.c.user_id.in_(list(users)))
            if channels:
                via = select(device_channels.c.device_id).where(device_channels.c.channel.in_(channels))
                reach.append(devices.c.id.in_(via))
            stmt = stmt.where(or_(*reach))
        return await self._select(stmt.order_by(devices.c.id))

    async def channels_of(self, device_ids: Sequence[str]) -> dict[str, list[str]]:
        """The role and topic channels (`role:<r>`, `topic:<t>`) each device was registered with."""
        out: dict[str, list[str]] = {}
        ids = list(dict.fromkeys(device_ids))
        for start in range(0, len(ids), 1000):  # a bounded IN list per query
            stmt = select(device_channels.c.device_id, device_channels.c.channel).where(
                device_channels.c.device_id.in_(ids[start : start + 1000])
            )
            async with self.engine.connect() as conn:
                for device_id, channel in await conn.execute(stmt):
                    out.setdefault(device_id, []).append(channel)
        return out

    async def admin_list(
        self, *, user_id: str | None, limit: int, cursor: str | None
    ) -> tuple[list[Device], str | None]:
        """A page of devices ordered by id; the cursor (opaque to callers) is the previous page's last id."""
        stmt = select(*_DEVICE_COLUMNS)
        if user_id is not None:
            stmt = stmt.where(devices.c.user_id == user_id)
        if cursor is not None:
            stmt = stmt.where(devices.c.id > cursor)
        page = await self._select(stmt.order_by(devices.c.id).limit(limit + 1))
        if len(page) > limit:
            return page[:limit], page[limit - 1].id
        return page, None
