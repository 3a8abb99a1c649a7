"""GET /v1/admin/deliveries on the real Hub (embedded bus, the test's database) via httpx's ASGI transport."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from tidings.api import deliveries as deliveries_api
from tidings.config import Settings
from tidings.delivery.log import DeliveryRecord
from tidings.hub import Hub

SECRET = "delivery-tests-secret-0123456789abcdef"


def auth(user: str, *roles: str) -> dict[str, str]:
    claims = {"sub": user, "exp": int(time.time()) + 3600, "roles": list(roles)}
    return {"authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


@pytest.fixture
async def client(migrated_url: str, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Hub]]:
    settings = Settings(_env_file=None, jwt_secret=SECRET, data_dir=tmp_path, database_url=migrated_url)  # type: ignore[call-arg]
    hub = Hub(settings)
    await hub.start()
    app = FastAPI()
    app.state.tidings_hub = hub
    app.include_router(deliveries_api.router)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tidings.test") as c:
            yield c, hub
    finally:
        await hub.stop()


async def test_admin_reads_the_log_by_event_and_user(client: tuple[httpx.AsyncClient, Hub]) -> None:
    c, hub = client
    now = time.time()
    await hub.deliveries.record(
        [
            DeliveryRecord("ev-1", "d1", "alice", "apns", "delivered", "", 200, 1, 21.0, now),
            DeliveryRecord("ev-1", "d2", "bob", "fcm", "dead_token", "UNREGISTERED", 404, 1, 30.0, now + 1),
            DeliveryRecord(
                "ev-2", "d1", "alice", "apns", "retry_later", "TooManyRequests", 429, 1, 5.0, now + 2
            ),
        ]
    )
    r = await c.get("/v1/admin/deliveries", params={"event_id": "ev-1"}, headers=auth("root", "admin"))
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()["deliveries"]
    assert [(x["device_id"], x["outcome"], x["reason"]) for x in rows] == [
        ("d2", "dead_token", "UNREGISTERED"),
        ("d1", "delivered", ""),
    ]
    assert rows[0]["created_at"].endswith("+00:00") and rows[0]["status"] == 404
    r = await c.get(
        "/v1/admin/deliveries", params={"user_id": "alice", "limit": 1}, headers=auth("root", "admin")
    )
    assert [x["event_id"] for x in r.json()["deliveries"]] == ["ev-2"]


async def test_only_admins_may_read_it(client: tuple[httpx.AsyncClient, Hub]) -> None:
    c, _ = client
    assert (await c.get("/v1/admin/deliveries", params={"event_id": "ev-1"})).status_code == 401
    r = await c.get("/v1/admin/deliveries", params={"event_id": "ev-1"}, headers=auth("alice"))
    assert r.status_code == 403


async def test_limit_is_validated(client: tuple[httpx.AsyncClient, Hub]) -> None:
    c, _ = client
    r = await c.get("/v1/admin/deliveries", params={"limit": 5000}, headers=auth("root", "admin"))
    assert r.status_code == 422 and r.json()["field"] == "limit"
