"""An example app on a real socket, its hub pushing to the three sandboxes (APNs, FCM, Web Push) over real
sockets, and helpers that read what each sandbox received. The clock is the test's: providers sign with real
time (the sandboxes check it), everything that decides by time (debounce, quiet hours, mutes) uses `clock`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from delivery.sandbox_rig import AllRig, all_rig
from support import PLAIN_PROTOCOL, PUBLISH_KEY, SECRET, InProcessServer, ManualClock
from tidings import Hub
from tidings.auth import mint_token
from tidings.push import build_providers


@dataclass
class Running:
    rig: AllRig
    hub: Hub
    server: InProcessServer
    http: httpx.AsyncClient
    clock: ManualClock

    @property
    def url(self) -> str:
        return self.server.url

    def token(self, user: str, *roles: str) -> str:
        return mint_token(SECRET, user, list(roles), ttl=86_000, now=self.clock())  # valid as the clock moves

    def auth(self, user: str, *roles: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user, *roles)}"}

    def received(self, provider: str, token: str) -> list[dict[str, Any]]:
        """What the provider's sandbox accepted for `token`: the app-visible keys of each push, oldest first."""
        if provider == "apns":
            records = self.rig.apns.sandbox.state.records
            return [r["payload"] for r in records if r.get("token") == token and r.get("status") == 200]
        if provider == "fcm":
            records = self.rig.fcm.state.records
            return [r["message"] for r in records if r.get("token") == token and r.get("status") == 200]
        records = self.rig.webpush.state.records
        return [
            orjson.loads(r["plaintext"])
            for r in records
            if r.get("token") == token and r.get("status") == 201
        ]

    async def pushed(
        self, provider: str, token: str, count: int, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """The pushes to `token`, once there are at least `count`."""
        async with asyncio.timeout(timeout):
            while len(self.received(provider, token)) < count:
                await asyncio.sleep(0.02)
        return self.received(provider, token)

    async def idle(self, timeout: float = 10.0) -> None:
        """Wait until the push queue has nothing left to do now (every job published so far was decided)."""
        async with asyncio.timeout(timeout):
            while (await self.hub.queue.stats()).outstanding:
                await asyncio.sleep(0.02)


@asynccontextmanager
async def running_app(
    tmp_path: Path, create_app: Callable[..., Any], *, clock: ManualClock | None = None, **settings: Any
) -> AsyncIterator[Running]:
    clock = clock or ManualClock()
    values: dict[str, Any] = {
        "jwt_secret": SECRET,
        "publish_key": PUBLISH_KEY,
        "debounce_poll_seconds": 0.05,
        "held_poll_seconds": 0.05,
        "stream_idle_timeout": 0,
        **settings,
    }
    async with all_rig(tmp_path, clock, **values) as rig:
        providers = build_providers(rig.settings, clock=time.time)
        hub = Hub(rig.settings, providers=providers, clock=clock)
        try:
            async with (
                InProcessServer(create_app(hub, handle_signals=False), http=PLAIN_PROTOCOL) as server,
                httpx.AsyncClient(base_url=server.url, timeout=10) as http,
            ):
                yield Running(rig, hub, server, http, clock)
        finally:
            for provider in providers.values():
                await provider.aclose()
