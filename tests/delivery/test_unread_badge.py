"""`badge: "unread"`: each push carries its user's unread inbox count at send time — the APNs badge, `badge` in the
FCM data and in the Web Push message — counted as the device reads the inbox (its user, and the roles it was
registered with), against the three sandboxes, sent by the hub's in-process worker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from support import ManualClock
from tidings import Hub
from tidings.inbox import Reader
from tidings.registry.validation import DeviceIn

from .sandbox_rig import all_rig, apns_token


def note(title: str, to: dict[str, Any]) -> dict[str, Any]:
    return {"type": "notes.posted", "to": to, "inbox": {"title": title}}


async def received(records: Callable[[], list[dict[str, Any]]], count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(15):  # the in-process worker sends in the background
        while len(found := [r for r in records() if r.get("status") in (200, 201)]) < count:
            await asyncio.sleep(0.02)
    return found


async def test_an_unread_badge_is_each_users_unread_count_at_send_time(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with all_rig(tmp_path, clock, worker_in_process=True) as rig:
        store = rig.apns.store
        ann_phone, bob_phone = apns_token(), apns_token()
        await store.register(
            "ann",
            DeviceIn(provider="apns", platform="ios", token=ann_phone, environment="sandbox"),
            roles=["staff"],
        )
        await store.register(
            "bob", DeviceIn(provider="apns", platform="ios", token=bob_phone, environment="sandbox")
        )
        android = await rig.register_fcm("ann")
        browser = await rig.register_webpush("ann")
        hub = Hub(rig.settings)
        async with hub.lifespan():
            await hub.publish_many(
                [
                    note("one", {"users": ["ann"]}),
                    note("two", {"users": ["ann"]}),
                    note("memo", {"roles": ["staff"]}),
                ]
            )
            ann = Reader("ann", frozenset({"staff"}))
            [newest, *_] = (await hub.inbox.list(ann)).items
            await hub.inbox.mark(ann, "read", [newest.id])  # 2 unread now
            push = {"mode": "alert", "title": "New message", "badge": "unread"}
            await hub.publish("notes.posted", to={"users": ["ann", "bob"]}, push=push, inbox=True)
            expected = (await hub.inbox.counts(ann)).unread
            assert expected == 3  # the item this push announces counts too: it was kept before the push went

            apns = {r["token"]: orjson.loads(r["body"]) for r in await received(rig.apns.received, 2)}
            assert apns[ann_phone]["aps"]["badge"] == expected and apns[ann_phone]["badge"] == expected
            assert apns[bob_phone]["aps"]["badge"] == 1  # bob's own count: the payload is built per count
            [fcm] = await received(
                lambda: [r for r in rig.fcm.state.records if r.get("token") == android.token], 1
            )
            assert fcm["message"]["data"]["badge"] == str(expected)
            assert fcm["message"]["apns"]["payload"]["aps"]["badge"] == expected
            [web] = await received(lambda: rig.webpush.state.records, 1)
            assert web["token"] == browser.token
            assert web["payload"]["badge"] == expected and web["payload"]["notification"]["badge"] == expected
