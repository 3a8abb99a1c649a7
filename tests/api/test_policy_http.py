"""The policy's HTTP surface on a real socket: a user's own preferences (GET/PUT/PATCH, scopes with `/`,
422 naming the field, 404 for a missing scope), mutes applied to the user's live SSE stream, and presence
for publishers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from support import PUBLISH_KEY, InProcessServer, app_of, open_stream
from tidings import Hub

PUBLISHER = {"Authorization": f"Bearer {PUBLISH_KEY}"}


@pytest.fixture
async def served(make_settings: Callable[..., Any]) -> AsyncIterator[tuple[InProcessServer, Hub]]:
    hub = Hub(make_settings())
    async with InProcessServer(app_of(hub)) as server:
        yield server, hub


def user(token: Callable[..., str], name: str = "ann") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(name)}"}


async def test_preferences_round_trip_for_the_user_themselves(
    served: tuple[InProcessServer, Hub], token: Callable[..., str]
) -> None:
    server, _ = served
    me = user(token)
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/v1/preferences", headers=me)).json() == {}
        put = await client.put("/v1/preferences", headers=me, json={"push": True})
        assert put.status_code == 200 and put.json() == {"push": True}
        patch = {"quiet_hours": {"start": "22:00", "end": "07:00"}, "push": None}
        r = await client.patch(
            "/v1/preferences", headers={**me, "Content-Type": "application/merge-patch+json"}, json=patch
        )
        assert r.json() == {"quiet_hours": {"start": "22:00", "end": "07:00", "mode": "hold"}}
        r = await client.put("/v1/preferences/scopes/project/7:tasks", headers=me, json={"muted": True})
        assert r.status_code == 200 and r.json()["scopes"] == {"project/7:tasks": {"muted": True}}
        other = await client.get("/v1/preferences", headers=user(token, "bob"))
        assert other.json() == {}  # nobody else's
        assert (await client.delete("/v1/preferences/scopes/project/7:tasks", headers=me)).status_code == 204
        missing = await client.delete("/v1/preferences/scopes/project/7:tasks", headers=me)
        assert missing.status_code == 404 and missing.json()["field"] == "scope"
        assert (await client.get("/v1/preferences")).status_code == 401


async def test_bad_preferences_are_422_naming_the_field(
    served: tuple[InProcessServer, Hub], token: Callable[..., str]
) -> None:
    server, _ = served
    me = user(token)
    async with httpx.AsyncClient(base_url=server.url) as client:
        bad_zone = {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Mars/Olympus"}}
        r = await client.patch("/v1/preferences", headers=me, json=bad_zone)
        assert r.status_code == 422 and r.json()["field"] == "quiet_hours.timezone"
        r = await client.put("/v1/preferences/scopes/conversation:1", headers=me, json={"muted": "yes"})
        assert r.status_code == 422 and r.json()["field"] == "muted"
        r = await client.put("/v1/preferences/scopes/-bad", headers=me, json={"muted": True})
        assert r.status_code == 422 and r.json()["field"] == "scope"


async def test_a_mute_set_over_http_applies_to_the_users_live_stream(
    served: tuple[InProcessServer, Hub], token: Callable[..., str]
) -> None:
    server, _ = served
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await client.put(
            "/v1/preferences/scopes/conversation:42", headers=user(token), json={"muted": True}
        )
        assert r.status_code == 200
        async with open_stream(server.url, token=token("ann")) as stream:
            events = [
                {
                    "type": "message.new",
                    "to": {"users": ["ann"]},
                    "scope": f"conversation:{c}",
                    "data": {"c": c},
                }
                for c in ("42", "7")
            ]
            r = await client.post("/v1/publish", headers=PUBLISHER, json=events)
            assert r.status_code == 202, r.text
            frame = await stream.next_event()
            assert frame.id == r.json()["ids"][1] and frame.json()["scope"] == "conversation:7"


async def test_presence_for_publishers(
    served: tuple[InProcessServer, Hub], token: Callable[..., str]
) -> None:
    server, _ = served
    async with httpx.AsyncClient(base_url=server.url) as client:

        async def presence() -> dict[str, Any]:
            r = await client.get("/v1/presence", params={"user_id": "ann"}, headers=PUBLISHER)
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            return body

        assert await presence() == {"user_id": "ann", "online": False, "connections": 0, "last_seen": None}
        async with open_stream(server.url, token=token("ann")), open_stream(server.url, token=token("ann")):
            now = await presence()
            assert now["online"] and now["connections"] == 2
        async with asyncio.timeout(5):
            while (gone := await presence())["online"]:
                await asyncio.sleep(0.02)
        assert gone["last_seen"] is not None
        assert (
            await client.get("/v1/presence", params={"user_id": "ann"}, headers=user(token))
        ).status_code == 403
        assert (await client.get("/v1/presence", headers=PUBLISHER)).status_code == 422
