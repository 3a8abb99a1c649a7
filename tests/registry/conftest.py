from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from registry.helpers import T0
from support import ManualClock
from tidings.api import devices as devices_api
from tidings.config import Settings
from tidings.hub import Hub
from tidings.registry.store import DeviceStore


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(frozen_at=T0)


@pytest.fixture
def store(engine: AsyncEngine, clock: ManualClock) -> DeviceStore:
    return DeviceStore(engine, clock=clock, ttl_days=90)


# --- HTTP: the real Hub (embedded bus, the test's database) behind httpx's ASGI transport -------------------

JWT_SECRET = "registry-tests-secret-0123456789abcdef"
RATE_PER_MINUTE = 6


class Api:
    """An HTTP client for the devices API plus the hub behind it; `as_(user, roles)` picks the caller."""

    def __init__(self, client: httpx.AsyncClient, hub: Hub) -> None:
        self.client = client
        self.hub = hub

    def auth(self, user: str, *roles: str) -> dict[str, str]:
        # tokens are checked against the hub's (frozen) clock
        claims = {"sub": user, "exp": int(self.hub.clock()) + 3600, "roles": list(roles)}
        return {"authorization": f"Bearer {jwt.encode(claims, JWT_SECRET, algorithm='HS256')}"}

    async def register(
        self, user: str, body: dict[str, Any], *roles: str, path: str = "/v1/devices"
    ) -> httpx.Response:
        return await self.client.post(path, json=body, headers=self.auth(user, *roles))


def hub_settings(**values: Any) -> Settings:
    """Settings for a test hub: never read from a developer's .env file."""
    return Settings(_env_file=None, jwt_secret=JWT_SECRET, publish_key="test-publish-key", **values)  # type: ignore[call-arg]


def make_app(hub: Hub) -> FastAPI:
    app = FastAPI()
    app.state.tidings_hub = hub
    app.include_router(devices_api.router)
    return app


@pytest.fixture
async def api(migrated_url: str, tmp_path: Path, clock: ManualClock) -> AsyncIterator[Api]:
    settings = hub_settings(
        data_dir=tmp_path,
        database_url=migrated_url,
        device_register_rate_per_minute=RATE_PER_MINUTE,
        webpush_http_hosts=["localhost"],
    )
    hub = Hub(settings, clock=clock)
    await hub.start()
    transport = httpx.ASGITransport(app=make_app(hub))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://tidings.test") as client:
            yield Api(client, hub)
    finally:
        await hub.stop()
