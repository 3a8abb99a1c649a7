"""The delivery example end to end, on its own routes and payloads: `POST /orders` reaches the admins' stream at
`GET /api/admin/events`; claims and status changes reach the store's and the courier's phones as silent pushes
`{type, order_id}` (the APNs and FCM sandboxes' records); devices register at `POST /v1/devices/register`."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
from examples.delivery.app import create_app
from examples_rig import Running, running_app

from support import frozen_clock, open_stream


def apns_token() -> str:
    return os.urandom(32).hex()


def fcm_token() -> str:
    return "fcm_" + os.urandom(24).hex()


async def register(app: Running, user: str, role: str, platform: str, token: str) -> httpx.Response:
    return await app.http.post(
        "/v1/devices/register", json={"platform": platform, "token": token}, headers=app.auth(user, role)
    )


async def test_creating_an_order_notifies_admins_within_500_ms(tmp_path: Path) -> None:
    async with running_app(tmp_path, create_app) as app:
        async with (
            open_stream(app.url, "/api/admin/events", token=app.token("root", "admin")) as admin,
            open_stream(app.url, "/hub/v1/events", token=app.token("cust", "customer")) as customer,
        ):
            started = time.monotonic()
            response = await app.http.post(
                "/orders",
                json={"store_id": "store-1", "item": "pizza", "quantity": 2},
                headers=app.auth("cust"),
            )
            frame = await admin.next_event(timeout=0.5)
            assert time.monotonic() - started < 0.5
            assert response.status_code == 201
            order = response.json()
            assert order == {"id": 1, "store_id": "store-1", "item": "pizza", "quantity": 2,
                             "customer_id": "cust", "courier_id": None, "status": "new"}  # fmt: skip
            assert frame.event == "order.created"
            assert frame.json()["data"] == {
                "order_id": 1,
                "store_id": "store-1",
                "item": "pizza",
                "quantity": 2,
            }
            await customer.assert_silent(0.2)  # not an admin: nothing
            bad = await app.http.post("/orders", json={"store_id": "s", "item": "", "quantity": 0},
                                      headers=app.auth("cust"))  # fmt: skip
            assert bad.status_code == 422
            anonymous = await app.http.post("/orders", json={"store_id": "s", "item": "x", "quantity": 1})
            assert anonymous.status_code == 401


async def test_the_admin_stream_is_for_admins_one_connection_each_with_a_30_s_keepalive(
    tmp_path: Path,
) -> None:
    clock = frozen_clock()
    async with running_app(tmp_path, create_app, clock=clock, keepalive_seconds=5) as app:
        refused = await app.http.get("/api/admin/events", params={"token": app.token("carol", "courier")})
        assert refused.status_code == 403
        root = app.token("root", "admin")
        async with (
            open_stream(app.url, "/api/admin/events", token=root) as first,
            open_stream(app.url, "/hub/v1/events", token=root) as elsewhere,  # the hub's, keepalive 5 s
        ):
            async with open_stream(app.url, "/api/admin/events", token=root) as second:
                with pytest.raises((StopAsyncIteration, httpx.RemoteProtocolError)):
                    await first.next_frame(timeout=5)  # the admin's older connection is closed
                clock.advance(6)
                app.hub.streams.sweep()  # the once-a-second sweep, run now at the moved clock
                assert (await elsewhere.next_frame()).comments == ["keepalive"]
                order = {"store_id": "s1", "item": "tea", "quantity": 1}
                await app.http.post("/orders", json=order, headers=app.auth("cust"))
                assert (await second.next_frame()).event == "order.created"  # no keepalive after 6 s
                clock.advance(30)
                app.hub.streams.sweep()
                assert (await second.next_frame()).comments == ["keepalive"]


async def test_store_and_courier_phones_get_silent_pushes_on_claim_and_status(tmp_path: Path) -> None:
    async with running_app(tmp_path, create_app) as app:
        store_phone, courier_phone, customer_phone = apns_token(), fcm_token(), apns_token()
        assert (await register(app, "store-1", "store", "ios", store_phone)).status_code == 201
        assert (await register(app, "carol", "courier", "android", courier_phone)).status_code == 201
        assert (await register(app, "cust", "customer", "ios", customer_phone)).status_code == 201
        refreshed = await register(app, "store-1", "store", "ios", store_phone)
        assert refreshed.status_code == 200 and refreshed.json()["platform"] == "ios"

        created = await app.http.post("/orders", json={"store_id": "store-1", "item": "pizza", "quantity": 2},
                                      headers=app.auth("cust"))  # fmt: skip
        order_id = created.json()["id"]
        claimed = await app.http.post(f"/orders/{order_id}/claim", headers=app.auth("carol", "courier"))
        assert claimed.status_code == 200 and claimed.json()["status"] == "claimed"
        [store_push] = await app.pushed("apns", store_phone, 1)
        assert store_push == {"aps": {"content-available": 1}, "type": "order.claimed",
                              "event_id": store_push["event_id"], "order_id": order_id}  # fmt: skip
        [courier_push] = await app.pushed("fcm", courier_phone, 1)
        assert courier_push["data"] == {"type": "order.claimed", "event_id": store_push["event_id"],
                                        "order_id": str(order_id)}  # fmt: skip
        assert "notification" not in courier_push  # silent

        ready = await app.http.post(f"/orders/{order_id}/status", json={"status": "ready"},
                                    headers=app.auth("store-1", "store"))  # fmt: skip
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        pushes = await app.pushed("apns", store_phone, 2)
        assert (pushes[1]["type"], pushes[1]["order_id"]) == ("order.status_changed", order_id)
        assert (await app.pushed("fcm", courier_phone, 2))[1]["data"]["type"] == "order.status_changed"

        same = await app.http.post(f"/orders/{order_id}/status", json={"status": "ready"},
                                   headers=app.auth("carol", "courier"))  # fmt: skip
        assert same.status_code == 200  # nothing changed: no event, no push
        await app.idle()
        assert len(app.received("apns", store_phone)) == 2 and len(app.received("fcm", courier_phone)) == 2
        assert app.received("apns", customer_phone) == []  # the customer is not told by push


async def test_the_apps_rules_hold(tmp_path: Path) -> None:
    async with running_app(tmp_path, create_app) as app:
        order = (await app.http.post("/orders", json={"store_id": "store-1", "item": "soup", "quantity": 1},
                                     headers=app.auth("cust"))).json()  # fmt: skip
        claim = f"/orders/{order['id']}/claim"
        assert (await app.http.post(claim, headers=app.auth("cust"))).status_code == 403  # not a courier
        assert (await app.http.post(claim, headers=app.auth("carol", "courier"))).status_code == 200
        assert (await app.http.post(claim, headers=app.auth("dave", "courier"))).status_code == 409
        status = f"/orders/{order['id']}/status"
        stranger = await app.http.post(
            status, json={"status": "delivered"}, headers=app.auth("dave", "courier")
        )
        assert stranger.status_code == 403
        assert (
            await app.http.post("/orders/99/claim", headers=app.auth("carol", "courier"))
        ).status_code == 404
        assert [
            o["id"] for o in (await app.http.get("/orders", headers=app.auth("dave", "courier"))).json()
        ] == []
        assert len((await app.http.get("/orders", headers=app.auth("root", "admin"))).json()) == 1

        bad_token = await register(app, "store-1", "store", "ios", "not-hex")
        assert bad_token.status_code == 422 and bad_token.json()["field"] == "token"
        bad_platform = await register(app, "store-1", "store", "web", apns_token())
        assert bad_platform.status_code == 422 and bad_platform.json()["field"] == "platform"
