"""The devices HTTP API on the real Hub, on SQLite and PostgreSQL: upsert, ownership, admin paging, limits."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from registry.conftest import RATE_PER_MINUTE, Api, hub_settings, make_app
from registry.helpers import apns_body, fcm_body, p256dh, webpush_body
from support import ManualClock
from tidings.hub import Hub


def error(resp: httpx.Response) -> tuple[int, str, str | None]:
    body = resp.json()
    return resp.status_code, body["error"], body.get("field")


async def test_register_201_then_200_and_alias_route(api: Api, clock: ManualClock) -> None:
    body = apns_body(name="Ana's iPhone", locale="en-GB", timezone="Europe/London")
    first = await api.register("ana", body)
    assert first.status_code == 201, first.text
    device = first.json()
    assert device["user_id"] == "ana" and device["active"] and device["environment"] == "production"
    assert "auth" not in device and "p256dh" not in device
    clock.advance(30)
    again = await api.register("ana", body, path="/v1/devices/register")
    assert again.status_code == 200
    assert again.json()["id"] == device["id"]
    assert again.json()["last_seen_at"] > device["last_seen_at"]
    fresh = await api.register("ana", webpush_body(), path="/v1/devices/register")
    assert fresh.status_code == 201


async def test_user_sees_only_own_devices(api: Api) -> None:
    ios = (await api.register("ana", apns_body())).json()
    web = (await api.register("ana", webpush_body())).json()
    await api.register("bob", fcm_body())
    listed = await api.client.get("/v1/devices", headers=api.auth("ana"))
    assert listed.status_code == 200
    assert {d["id"] for d in listed.json()["devices"]} == {ios["id"], web["id"]}
    assert (await api.client.get("/v1/devices")).status_code == 401


async def test_delete_own_device_by_id_and_by_token(api: Api) -> None:
    body = fcm_body()
    one = (await api.register("ana", apns_body())).json()
    await api.register("ana", body)
    resp = await api.client.delete(f"/v1/devices/{one['id']}", headers=api.auth("ana"))
    assert resp.status_code == 204
    resp = await api.client.delete("/v1/devices", params={"token": body["token"]}, headers=api.auth("ana"))
    assert resp.status_code == 204
    assert (await api.client.get("/v1/devices", headers=api.auth("ana"))).json()["devices"] == []
    missing_token = await api.client.delete("/v1/devices", headers=api.auth("ana"))
    assert error(missing_token) == (422, "validation_error", "token")


async def test_someone_elses_device_is_404_exactly_like_a_missing_one(api: Api) -> None:
    body = webpush_body()
    bobs = (await api.register("bob", body)).json()
    endpoint = body["subscription"]["endpoint"]
    as_ana = api.auth("ana")
    by_id = await api.client.delete(f"/v1/devices/{bobs['id']}", headers=as_ana)
    missing = await api.client.delete(f"/v1/devices/{'0' * 32}", headers=as_ana)
    malformed = await api.client.delete("/v1/devices/not-an-id", headers=as_ana)
    by_token = await api.client.delete("/v1/devices", params={"token": endpoint}, headers=as_ana)
    unknown_token = await api.client.delete("/v1/devices", params={"token": "nope"}, headers=as_ana)
    answers = {(r.status_code, r.content) for r in (by_id, missing, malformed, by_token, unknown_token)}
    assert len(answers) == 1 and next(iter(answers))[0] == 404
    assert (await api.hub.devices.get(bobs["id"])) is not None


async def test_token_moves_to_the_new_owner(api: Api) -> None:
    body = apns_body()
    anas = (await api.register("ana", body, "courier")).json()
    moved = await api.register("bob", body)
    assert moved.status_code == 201 and moved.json()["user_id"] == "bob"
    assert (await api.client.get("/v1/devices", headers=api.auth("ana"))).json()["devices"] == []
    gone = await api.client.delete(f"/v1/devices/{anas['id']}", headers=api.auth("ana"))
    assert gone.status_code == 404
    # Ana's role no longer reaches the device; Bob does.
    assert await api.hub.devices.list_active_for_audience(roles=["courier"]) == []
    assert [d.user_id for d in await api.hub.devices.list_active_for_audience(users=["bob"])] == ["bob"]


async def test_disabled_token_is_reenabled_by_registration(api: Api) -> None:
    body = fcm_body()
    await api.register("ana", body)
    assert await api.hub.devices.disable("fcm", body["token"], "Unregistered")
    listed = (await api.client.get("/v1/devices", headers=api.auth("ana"))).json()["devices"]
    assert listed[0]["active"] is False and listed[0]["disabled_reason"] == "Unregistered"
    again = await api.register("ana", body)
    assert again.status_code == 200 and again.json()["active"] is True


async def test_admin_listing_pages_and_requires_admin(api: Api) -> None:
    for i in range(5):
        await api.register(f"user{i % 2}", fcm_body())
    assert (await api.client.get("/v1/admin/devices", headers=api.auth("ana"))).status_code == 403
    admin = api.auth("root", "admin")
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    for _ in range(5):
        page = (await api.client.get("/v1/admin/devices", params=params, headers=admin)).json()
        seen += [d["id"] for d in page["devices"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert len(seen) == len(set(seen)) == 5
    one_user = await api.client.get("/v1/admin/devices", params={"user_id": "user0"}, headers=admin)
    assert {d["user_id"] for d in one_user.json()["devices"]} == {"user0"}
    bad = await api.client.get(
        "/v1/admin/devices", params={"cursor": "x'; drop table devices;--"}, headers=admin
    )
    assert error(bad) == (422, "validation_error", "cursor")
    nul = await api.client.get("/v1/admin/devices", params={"user_id": "a\x00b"}, headers=admin)
    assert error(nul) == (422, "validation_error", "user_id")
    too_many = await api.client.get("/v1/admin/devices", params={"limit": 10_000}, headers=admin)
    assert error(too_many) == (422, "validation_error", "limit")


async def test_registration_is_rate_limited_per_user(api: Api, clock: ManualClock) -> None:
    for _ in range(RATE_PER_MINUTE):
        assert (await api.register("ana", fcm_body())).status_code == 201
    refused = await api.register("ana", fcm_body())
    assert error(refused)[:2] == (429, "rate_limited")
    retry_after = int(refused.headers["retry-after"])
    assert retry_after == 60 // RATE_PER_MINUTE
    assert (await api.register("bob", fcm_body())).status_code == 201, "other users are not affected"
    clock.advance(retry_after - 1)
    assert (await api.register("ana", fcm_body())).status_code == 429
    clock.advance(1)
    assert (await api.register("ana", fcm_body())).status_code == 201


VALIDATION = [
    (apns_body(platform="android"), "platform"),
    (apns_body("abc"), "token"),
    (fcm_body("has space"), "token"),
    (fcm_body(environment="sandbox"), "environment"),
    (webpush_body("http://push.example/x"), "subscription.endpoint"),
    (webpush_body("https://169.254.169.254/latest/meta-data"), "subscription.endpoint"),
    (webpush_body("https://app.localhost/x"), "subscription.endpoint"),  # localhost itself is a dev host here
    ({**webpush_body(), "subscription": {"endpoint": "https://p.ex/x", "keys": {"p256dh": "A", "auth": "x"}}},
     "subscription.keys.p256dh"),
    (fcm_body(user_id="mallory"), "user_id"),
    (fcm_body(timezone="Nowhere/Land"), "timezone"),
    ({"provider": "webpush", "platform": "web"}, "subscription"),
]  # fmt: skip


async def test_every_invalid_registration_is_a_422_naming_the_field(api: Api) -> None:
    for i, (body, field) in enumerate(VALIDATION):
        resp = await api.register(f"user{i}", body)  # one user each: attempts count against the rate limit
        assert resp.status_code == 422, (body, resp.text)
        assert error(resp) == (422, "validation_error", field), (body, resp.text)
    assert await api.hub.devices.list_active_for_audience(broadcast=True) == []


async def test_hostile_bodies_get_4xx_never_500(api: Api) -> None:
    as_ana = {**api.auth("ana"), "content-type": "application/json"}
    big = await api.client.post("/v1/devices", content=b'{"token": "' + b"a" * 20_000 + b'"}', headers=as_ana)
    assert big.status_code == 413
    assert (await api.client.post("/v1/devices", content=b"{not json", headers=as_ana)).status_code == 400
    nul_name = await api.register("user9", fcm_body(name="a\x00b"))
    assert error(nul_name) == (422, "validation_error", "name")
    long_sub = await api.register("u" * 300, fcm_body())  # refused by the verifier or by the devices API
    assert long_sub.status_code in (400, 401), long_sub.text
    hostile = (
        [],
        "x",
        7,
        {"provider": ["apns"]},
        {"provider": "apns", "platform": "ios", "token": {"$gt": ""}},
    )
    for i, body in enumerate(hostile):
        resp = await api.register(f"user{i}", body)  # type: ignore[arg-type]
        assert resp.status_code == 422, (body, resp.text)


async def test_http_dev_host_is_accepted(api: Api) -> None:
    resp = await api.register("ana", webpush_body("http://localhost:8089/push/abc"))
    assert resp.status_code == 201, resp.text


async def test_allow_list_refuses_other_push_services(api: Api) -> None:
    api.hub.settings.webpush_allowed_hosts = ["fcm.googleapis.com", "*.push.apple.com"]
    from tidings.api.devices import _per_hub

    _per_hub.pop(api.hub, None)  # the policy is built once per hub from its settings
    assert (await api.register("ana", webpush_body("https://web.push.apple.com/x"))).status_code == 201
    resp = await api.register("ana", webpush_body("https://attacker.example/x"))
    assert error(resp) == (422, "validation_error", "subscription.endpoint")


async def test_50_concurrent_http_registrations_of_one_token(api: Api) -> None:
    body = webpush_body()
    body["subscription"]["keys"]["p256dh"] = p256dh()
    started = time.perf_counter()
    async with asyncio.timeout(60):
        answers = await asyncio.gather(*(api.register(f"user{i}", body) for i in range(50)))
    elapsed = time.perf_counter() - started
    assert {r.status_code for r in answers} <= {200, 201}, [r.text for r in answers if r.status_code >= 300]
    owners = {d.user_id for d in await api.hub.devices.list_active_for_audience(broadcast=True)}
    assert len(owners) == 1
    print(
        f"50 concurrent HTTP registrations: {elapsed * 1000:.0f} ms on {api.hub.devices.engine.dialect.name}"
    )


async def test_unreachable_database_is_503_with_retry_after(tmp_path: Path, clock: ManualClock) -> None:
    settings = hub_settings(data_dir=tmp_path, database_url="postgresql+asyncpg://postgres@127.0.0.1:1/none")
    hub = Hub(settings, clock=clock)
    await hub.start()
    try:
        transport = httpx.ASGITransport(app=make_app(hub))
        async with httpx.AsyncClient(transport=transport, base_url="http://tidings.test") as client:
            api = Api(client, hub)
            resp = await api.register("ana", fcm_body())
            assert error(resp)[:2] == (503, "unavailable") and resp.headers["retry-after"] == "1"
            listed = await client.get("/v1/devices", headers=api.auth("ana"))
            assert listed.status_code == 503
    finally:
        await hub.stop()


async def test_topics_follow_the_hubs_topic_rule(
    migrated_url: str, tmp_path: Path, clock: ManualClock
) -> None:
    settings = hub_settings(data_dir=tmp_path, database_url=migrated_url)
    rule = lambda principal, topic: not topic.startswith("private/")  # noqa: E731
    hub = Hub(settings, clock=clock, topic_access=rule)
    await hub.start()
    try:
        transport = httpx.ASGITransport(app=make_app(hub))
        async with httpx.AsyncClient(transport=transport, base_url="http://tidings.test") as client:
            api = Api(client, hub)
            refused = await api.register("ana", fcm_body(topics=["news", "private/bob"]))
            assert error(refused) == (403, "forbidden", "topics")
            assert (await api.register("ana", fcm_body(topics=["news"]))).status_code == 201
    finally:
        await hub.stop()


def test_openapi_describes_the_registration_body() -> None:
    from fastapi import FastAPI

    from tidings.api import devices as devices_api

    app = FastAPI()
    app.include_router(devices_api.router)
    doc = app.openapi()
    for path in ("/v1/devices", "/v1/devices/register"):
        schema = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert set(schema["required"]) == {"provider", "platform"}
        assert "$ref" not in str(schema), "every reference is inlined"
        assert "keys" in str(schema["properties"]["subscription"])
    assert {"get", "delete"} <= doc["paths"]["/v1/devices"].keys()
    assert "/v1/admin/devices" in doc["paths"] and "/v1/devices/{device_id}" in doc["paths"]
