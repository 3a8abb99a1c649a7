"""The issue's "done means", end to end: the standalone app on a real socket, zero-setup SQLite.

A user registers their iPhone and their browser, sees both, logs out on one; an operator prunes stale rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from registry.helpers import apns_body, webpush_body
from tidings.registry.store import DeviceStore

DAY = 86_400.0


async def test_register_iphone_and_browser_list_logout_and_prune(
    server: Any, token: Callable[..., str]
) -> None:
    auth = {"authorization": f"Bearer {token('alice')}"}
    async with httpx.AsyncClient(base_url=server.url, headers=auth, timeout=10) as client:
        iphone = await client.post("/v1/devices", json=apns_body(name="Alice's iPhone", locale="en-US"))
        browser = await client.post("/v1/devices/register", json=webpush_body())
        assert (iphone.status_code, browser.status_code) == (201, 201), (iphone.text, browser.text)
        listed = (await client.get("/v1/devices")).json()["devices"]
        assert {d["platform"] for d in listed} == {"ios", "web"}

        logout = await client.delete(f"/v1/devices/{browser.json()['id']}")
        assert logout.status_code == 204
        listed = (await client.get("/v1/devices")).json()["devices"]
        assert [d["id"] for d in listed] == [iphone.json()["id"]]

        as_bob = {"authorization": f"Bearer {token('bob')}"}
        assert (await client.get("/v1/devices", headers=as_bob)).json()["devices"] == []

    # The operator's prune, run 91 days later on the server's database.
    later = DeviceStore(server.hub.devices.engine, clock=lambda: time.time() + 91 * DAY, ttl_days=90)
    report = await later.prune()
    assert report.stale == 1 and await later.list_for_user("alice") == []
