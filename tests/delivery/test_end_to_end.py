"""Issue 4's "done means", over HTTP on real sockets: with only the sandboxes running, a user registers an
iPhone, an Android phone and a browser, a backend publishes `order.created` with `"push": "silent"`, and the
delivery log and each sandbox's record show a correct push; flipping the sandboxes to "gone" disables every
device. The hub runs embedded (memory bus, SQLite) with its in-process worker built from Settings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest

from support import InProcessServer, ManualClock, app_of
from tidings.hub import Hub
from tidings.sandbox.control import Rule

from .sandbox_rig import AllRig, all_rig

SECRET = "e2e-delivery-secret-0123456789abcdef0123"
PUBLISH_KEY = "e2e-publish-key"


def bearer(user: str, *roles: str) -> dict[str, str]:
    claims = {"sub": user, "exp": int(time.time()) + 3600, "roles": list(roles)}
    return {"authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


@pytest.fixture
async def stack(tmp_path: Path, clock: ManualClock) -> AsyncIterator[tuple[AllRig, httpx.AsyncClient]]:
    async with all_rig(tmp_path, clock, jwt_secret=SECRET, publish_key=PUBLISH_KEY) as rig:
        hub = Hub(rig.settings)
        async with (
            InProcessServer(app_of(hub)) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            yield rig, client


async def publish(client: httpx.AsyncClient) -> str:
    event = {
        "type": "order.created",
        "to": {"users": ["alice"]},
        "data": {"order_id": "o-1"},
        "push": "silent",
    }
    r = await client.post("/v1/publish", json=event, headers={"authorization": f"Bearer {PUBLISH_KEY}"})
    assert r.status_code == 202, r.text
    [event_id] = r.json()["ids"]
    return str(event_id)


async def log_of(client: httpx.AsyncClient, event_id: str, rows: int) -> list[dict[str, Any]]:
    """The delivery log of an event once it has `rows` rows (the worker runs in the background)."""
    async with asyncio.timeout(15):
        while True:
            r = await client.get(
                "/v1/admin/deliveries", params={"event_id": event_id}, headers=bearer("ops", "admin")
            )
            assert r.status_code == 200, r.text
            found: list[dict[str, Any]] = r.json()["deliveries"]
            if len(found) >= rows:
                return found
            await asyncio.sleep(0.05)


async def test_register_publish_silent_push_then_gone_disables(
    stack: tuple[AllRig, httpx.AsyncClient],
) -> None:
    rig, client = stack
    subscription = rig.webpush.subscribe()
    bodies = {
        "apns": {"provider": "apns", "platform": "ios", "token": "ab" * 32, "environment": "sandbox"},
        "fcm": {"provider": "fcm", "platform": "android", "token": "fcm_" + "x" * 40},
        "webpush": {"provider": "webpush", "platform": "web", "subscription": subscription},
    }
    for body in bodies.values():
        r = await client.post("/v1/devices", json=body, headers=bearer("alice"))
        assert r.status_code in (200, 201), r.text

    event_id = await publish(client)
    rows = await log_of(client, event_id, 3)
    assert sorted((x["provider"], x["outcome"]) for x in rows) == [
        ("apns", "delivered"),
        ("fcm", "delivered"),
        ("webpush", "delivered"),
    ]
    [apns] = rig.apns.received()
    assert apns["headers"]["apns-push-type"] == "background" and apns["headers"]["apns-priority"] == "5"
    assert apns["headers"]["apns-topic"] == rig.settings.apns_topic
    payload = orjson.loads(apns["body"])
    assert payload["aps"] == {"content-available": 1} and payload["type"] == "order.created"
    [fcm] = [r for r in rig.fcm.state.records if r.get("kind") == "send"]
    assert fcm["message"]["data"]["type"] == "order.created" and fcm["message"]["data"]["order_id"] == "o-1"
    [web] = rig.webpush.state.records
    assert web["status"] == 201

    # Flip every service to "this token is gone".
    rig.apns.sandbox.state.add_rule(Rule(token="ab" * 32, status=410, reason="Unregistered"))
    rig.fcm.state.add_rule(Rule(token=bodies["fcm"]["token"], status=404, reason="UNREGISTERED"))  # type: ignore[arg-type]
    rig.webpush.state.add_rule(Rule(token=subscription["endpoint"], status=410))
    gone_id = await publish(client)
    rows = await log_of(client, gone_id, 3)
    assert {x["outcome"] for x in rows} == {"dead_token"}
    r = await client.get("/v1/devices", headers=bearer("alice"))
    devices = r.json()["devices"] if isinstance(r.json(), dict) else r.json()
    assert len(devices) == 3 and all(d["disabled_at"] for d in devices)

    # A third event reaches nobody, and the log says so.
    again = await publish(client)
    [row] = await log_of(client, again, 1)
    assert (row["outcome"], row["reason"]) == ("skipped", "no_active_devices")
