"""A hub for delivery-policy tests: embedded (memory bus, SQLite), its in-process worker sending to the APNs
sandbox over a real socket, and a frozen, controllable clock for everything that decides by time (quiet hours,
mutes, debounce windows, held releases). The APNs provider signs with real time, as the sandbox checks it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from support import ManualClock
from tidings import Hub
from tidings.auth import Principal
from tidings.delivery.log import DeliveryRecord
from tidings.registry.store import Device
from tidings.registry.validation import DeviceIn
from tidings.streams.connection import Connection

from .sandbox_rig import ApnsRig, apns_rig, apns_settings, apns_token

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@dataclass
class PolicyRig:
    apns: ApnsRig
    clock: ManualClock
    tmp_path: Path
    hub: Hub

    async def phone(self, user: str, *, timezone: str | None = None) -> Device:
        device, _ = await self.apns.store.register(
            user,
            DeviceIn(
                provider="apns", platform="ios", token=apns_token(), environment="sandbox", timezone=timezone
            ),
        )
        return device

    def online(self, user: str) -> Connection:
        """A live stream of `user` on this process (what presence counts)."""
        return self.hub.open_stream(Principal(user), [], endpoint="events", limit=0, ip="", replaying=False)

    def offline(self, conn: Connection) -> None:
        conn.close("client")
        self.hub.streams.remove(conn)

    async def rows(self, event_id: str, count: int, timeout: float = 10.0) -> list[DeliveryRecord]:
        """The event's delivery-log rows, oldest first, once there are at least `count`."""
        async with asyncio.timeout(timeout):
            while True:
                found = await self.hub.deliveries.query(event_id=event_id)
                if len(found) >= count:
                    return found[::-1]  # newest first, ties by insertion: reversed, the story in order
                await asyncio.sleep(0.02)

    async def pushes(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """What the APNs sandbox received, once it has at least `count` pushes: headers and decoded body."""
        async with asyncio.timeout(timeout):
            while len(self.apns.received()) < count:
                await asyncio.sleep(0.02)
        return [{"headers": r["headers"], **orjson.loads(r["body"])} for r in self.apns.received()]

    async def idle(self, timeout: float = 10.0) -> None:
        """Wait until the push queue has nothing left to do now (before moving the clock)."""
        async with asyncio.timeout(timeout):
            while (await self.hub.queue.stats()).outstanding:
                await asyncio.sleep(0.02)


def rig_settings(apns: ApnsRig, tmp_path: Path, **extra: Any) -> Any:
    values: dict[str, Any] = {
        "jwt_secret": "policy-rig-secret-0123456789abcdef",
        "publish_key": "policy-rig-publish-key",
        "held_poll_seconds": 0.05,
        "debounce_poll_seconds": 0.05,
        "stream_idle_timeout": 0,
    }
    values.update(extra)
    return apns_settings(apns, tmp_path, **values)


@asynccontextmanager
async def policy_rig(
    tmp_path: Path, *, clock: ManualClock | None = None, **settings: Any
) -> AsyncIterator[PolicyRig]:
    clock = clock or ManualClock(frozen_at=T0)
    async with apns_rig(tmp_path, clock) as apns:
        provider = apns.provider()
        hub = Hub(rig_settings(apns, tmp_path, **settings), devices=apns.store, providers={"apns": provider},
                  clock=clock)  # fmt: skip
        try:
            async with hub.lifespan():
                yield PolicyRig(apns, clock, tmp_path, hub)
        finally:
            await provider.aclose()


@asynccontextmanager
async def restarted(rig: PolicyRig, **settings: Any) -> AsyncIterator[Hub]:
    """A second hub on the same database and sandbox (a worker restarted)."""
    provider = rig.apns.provider()
    hub = Hub(rig_settings(rig.apns, rig.tmp_path, **settings), devices=rig.apns.store,
              providers={"apns": provider}, clock=rig.clock)  # fmt: skip
    try:
        async with hub.lifespan():
            yield hub
    finally:
        await provider.aclose()
