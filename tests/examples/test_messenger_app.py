"""The messenger example end to end, on its own routes and payloads, against the three push sandboxes: a message
reaches the other participants' streams; only offline participants who did not mute the conversation and are
outside their quiet hours get the alert push (held ones when the hours end); the sender gets nothing; the device
routes round-trip, a Web Push subscription's JSON text included."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from examples.messenger.app import create_app
from examples_rig import Running, running_app

from support import frozen_clock, open_stream
from tidings.delivery.log import DeliveryRecord

API = "/api/v1/messenger"


async def device(
    app: Running, user: str, provider: str, platform: str, token: str, name: str
) -> dict[str, Any]:
    body = {"device_token": token, "platform": platform, "provider": provider, "device_name": name}
    response = await app.http.post(f"{API}/devices/register", json=body, headers=app.auth(user))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def send(app: Running, user: str, conversation: int, text: str) -> dict[str, Any]:
    response = await app.http.post(
        f"{API}/conversations/{conversation}/messages", json={"text": text}, headers=app.auth(user)
    )
    assert response.status_code == 201, response.text
    message: dict[str, Any] = response.json()
    return message


async def next_message(stream: Any) -> Any:
    """The next `message.new` on a user's stream (its inbox's `inbox.changed` counts come between them)."""
    while (frame := await stream.next_event()).event == "inbox.changed":
        pass
    assert frame.event == "message.new", frame
    return frame


async def skipped(app: Running, user: str) -> list[str]:
    """Why the user's pushes were not sent, oldest first (the delivery log's policy rows)."""
    rows: list[DeliveryRecord] = await app.hub.deliveries.query(user_id=user)
    return [r.reason.split(";")[0] for r in reversed(rows) if r.outcome == "skipped"]


async def logged(app: Running, user: str, outcome: str) -> None:
    """Wait for a delivery-log row of `user` with `outcome`."""
    async with asyncio.timeout(10):
        while not any(r.outcome == outcome for r in await app.hub.deliveries.query(user_id=user)):
            await asyncio.sleep(0.02)


async def test_only_offline_unmuted_participants_outside_quiet_hours_get_the_alert(tmp_path: Path) -> None:
    clock = frozen_clock()
    async with running_app(tmp_path, create_app, clock=clock) as app:
        ann_phone, dee_phone = os.urandom(32).hex(), os.urandom(32).hex()
        bo_phone, sam_phone = "fcm_" + os.urandom(24).hex(), "fcm_" + os.urandom(24).hex()
        cy_browser = app.rig.webpush.subscribe()
        await device(app, "ann", "apns", "ios", ann_phone, "Ann's iPhone")  # offline: gets it
        await device(app, "bo", "fcm", "android", bo_phone, "Bo's Pixel")  # online: sees it live instead
        await device(app, "cy", "web_push", "web", json.dumps(cy_browser), "Cy's Firefox")  # muted it
        await device(app, "dee", "apns", "ios", dee_phone, "Dee's iPhone")  # asleep: held until morning
        await device(app, "sam", "fcm", "android", sam_phone, "Sam's phone")  # the sender

        created = await app.http.post(
            f"{API}/conversations", json={"title": "Lunch", "participants": ["ann", "bo", "cy", "dee"]},
            headers=app.auth("sam"),
        )  # fmt: skip
        assert created.status_code == 201
        chat = created.json()["id"]
        mute = await app.http.put(
            f"{API}/conversations/{chat}/mute", json={"hours": 8}, headers=app.auth("cy")
        )
        assert mute.status_code == 200 and mute.json()["muted"] is True
        now = datetime.fromtimestamp(clock(), UTC)
        hours = {"start": f"{now - timedelta(hours=1):%H:%M}", "end": f"{now + timedelta(hours=1):%H:%M}",
                 "timezone": "UTC"}  # fmt: skip
        quiet = await app.http.put(f"{API}/quiet-hours", json=hours, headers=app.auth("dee"))
        assert quiet.status_code == 200 and quiet.json()["start"] == hours["start"]

        async with (
            open_stream(app.url, f"{API}/events", token=app.token("bo")) as bo,
            open_stream(app.url, f"{API}/events", token=app.token("sam")) as sam,
        ):
            message = await send(app, "sam", chat, "Pizza at noon?")
            frame = await next_message(bo)
            assert frame.json()["data"] == {"conversation_id": chat, "message_id": message["id"],
                                            "sender_id": "sam", "preview": "Pizza at noon?"}  # fmt: skip
            [alert] = await app.pushed("apns", ann_phone, 1)
            assert alert["aps"]["alert"] == {"title": "Lunch", "body": "Pizza at noon?"}
            assert alert["aps"]["thread-id"] == f"conversation:{chat}"
            assert (alert["type"], alert["conversation_id"], alert["message_id"]) == ("message.new", chat, 1)
            await app.idle()
            await sam.assert_silent(0.2)  # the sender: no event
            assert app.received("fcm", sam_phone) == []  # and no push
            assert app.received("fcm", bo_phone) == []
            assert app.received("webpush", cy_browser["endpoint"]) == []
            assert app.received("apns", dee_phone) == []
            assert await skipped(app, "bo") == ["presence"]
            assert await skipped(app, "cy") == ["muted"]
            assert await skipped(app, "dee") == ["quiet_hours"]

            await send(app, "sam", chat, "Or sushi?")
            await app.pushed("apns", ann_phone, 2)
            await app.idle()
            clock.advance(
                2 * 3600
            )  # Dee's quiet hours are over: one push for the conversation, with the count
            [released] = await app.pushed("apns", dee_phone, 1)
            assert released["aps"]["alert"]["body"] == "Or sushi?" and released["coalesced"] == 2
            await logged(app, "dee", "coalesced")  # the release is booked (its held rows are done with)

            clock.advance(7 * 3600)  # Cy's 8 hours are over; Bo is still online
            await send(app, "sam", chat, "See you there")
            [to_cy] = await app.pushed("webpush", cy_browser["endpoint"], 1)
            assert to_cy["notification"]["body"] == "See you there" and to_cy["conversation_id"] == chat
            await app.pushed("apns", ann_phone, 3)
            await app.idle()
            assert app.received("fcm", bo_phone) == [] and app.received("fcm", sam_phone) == []
            assert len(app.received("apns", dee_phone)) == 2  # outside her quiet hours now: sent at once


async def test_a_muted_conversation_is_not_streamed_either_until_unmuted(tmp_path: Path) -> None:
    async with running_app(tmp_path, create_app) as app:
        chat = (await app.http.post(f"{API}/conversations", json={"participants": ["ann"]},
                                    headers=app.auth("sam"))).json()["id"]  # fmt: skip
        other = (await app.http.post(f"{API}/conversations", json={"participants": ["ann"]},
                                     headers=app.auth("bo"))).json()["id"]  # fmt: skip
        await app.http.put(f"{API}/conversations/{chat}/mute", json={}, headers=app.auth("ann"))
        async with open_stream(app.url, f"{API}/events", token=app.token("ann")) as ann:
            await send(app, "sam", chat, "muted")
            await send(app, "bo", other, "not muted")
            assert (await next_message(ann)).json()["data"]["preview"] == "not muted"
            unmuted = await app.http.delete(f"{API}/conversations/{chat}/mute", headers=app.auth("ann"))
            assert unmuted.status_code == 204
            # a change of preferences reaches open streams through the bus, a moment later (not before the
            # DELETE answers): wait for this process's streams to have it
            policy = app.hub.streams.policy
            assert policy is not None
            async with asyncio.timeout(5):
                while policy.muted("ann"):
                    await asyncio.sleep(0.01)
            await send(app, "sam", chat, "heard again")
            assert (await next_message(ann)).json()["data"]["preview"] == "heard again"
        outsider = await app.http.put(f"{API}/conversations/{chat}/mute", json={}, headers=app.auth("zed"))
        assert outsider.status_code == 404
        not_member = await app.http.post(f"{API}/conversations/{chat}/messages", json={"text": "hi"},
                                         headers=app.auth("zed"))  # fmt: skip
        assert not_member.status_code == 404


async def test_device_routes_round_trip(tmp_path: Path) -> None:
    async with running_app(tmp_path, create_app) as app:
        subscription = app.rig.webpush.subscribe()
        text = json.dumps(subscription)
        browser = await device(app, "ann", "web_push", "web", text, "Firefox on laptop")
        assert browser["device_token"] == subscription["endpoint"]
        assert (browser["provider"], browser["platform"], browser["device_name"]) == ("web_push", "web",
                                                                                      "Firefox on laptop")  # fmt: skip
        phone_token = os.urandom(32).hex()
        await device(app, "ann", "apns", "ios", phone_token, "iPhone")
        again = await app.http.post(
            f"{API}/devices/register",
            json={"device_token": text, "platform": "web", "provider": "web_push", "device_name": "Firefox"},
            headers=app.auth("ann"),
        )
        assert again.status_code == 200 and again.json()["device_name"] == "Firefox"  # refreshed, not added

        listed = (await app.http.get(f"{API}/devices", headers=app.auth("ann"))).json()
        assert sorted((d["provider"], d["device_token"]) for d in listed) == sorted(
            [("web_push", subscription["endpoint"]), ("apns", phone_token)]
        )
        assert (await app.http.get(f"{API}/devices", headers=app.auth("bo"))).json() == []

        removed = await app.http.delete(f"{API}/devices/{text}", headers=app.auth("ann"))
        assert removed.status_code == 204  # by the subscription's JSON text, as registered
        assert (await app.http.delete(f"{API}/devices/{text}", headers=app.auth("ann"))).status_code == 404
        assert (
            await app.http.delete(f"{API}/devices/{phone_token}", headers=app.auth("bo"))
        ).status_code == 404
        assert (
            await app.http.delete(f"{API}/devices/{phone_token}", headers=app.auth("ann"))
        ).status_code == 204
        assert (await app.http.get(f"{API}/devices", headers=app.auth("ann"))).json() == []

        for body, field in (
            ({"device_token": "not json", "platform": "web", "provider": "web_push"}, "device_token"),
            ({"device_token": json.dumps({**subscription, "keys": {"p256dh": "x", "auth": "y"}}),
              "platform": "web", "provider": "web_push"}, "device_token.keys.p256dh"),
            ({"device_token": "zz", "platform": "ios", "provider": "apns"}, "device_token"),
            ({"device_token": phone_token, "platform": "android", "provider": "apns"}, "platform"),
            ({"device_token": phone_token, "platform": "ios", "provider": "mqtt"}, "provider"),
        ):  # fmt: skip
            refused = await app.http.post(f"{API}/devices/register", json=body, headers=app.auth("ann"))
            assert (refused.status_code, refused.json()["field"]) == (422, field), refused.text
        private = {**subscription, "endpoint": "https://10.0.0.1/push/x"}
        refused = await app.http.post(
            f"{API}/devices/register",
            json={"device_token": json.dumps(private), "platform": "web", "provider": "web_push"},
            headers=app.auth("ann"),
        )
        assert (refused.status_code, refused.json()["field"]) == (422, "device_token.endpoint")
