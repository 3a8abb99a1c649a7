"""DeviceStore on SQLite and PostgreSQL: upsert semantics, ownership, audience, disable, prune, paging."""

from __future__ import annotations

import asyncio
import time

from registry.helpers import apns_body, device_in, fcm_body, webpush_body
from support import ManualClock
from tidings.registry.store import DeviceStore

DAY = 86_400.0


async def test_register_creates_then_updates_same_row(store: DeviceStore, clock: ManualClock) -> None:
    body = apns_body(name="Ana's iPhone")
    first, created = await store.register("ana", device_in(body))
    assert created
    assert len(first.id) == 32 and first.user_id == "ana" and first.environment == "production"
    clock.advance(60)
    second, created = await store.register("ana", device_in({**body, "name": "Renamed"}))
    assert not created
    assert second.id == first.id and second.created_at == first.created_at
    assert second.last_seen_at > first.last_seen_at and second.name == "Renamed"
    assert [d.id for d in await store.list_for_user("ana")] == [first.id]


async def test_apns_token_case_does_not_make_a_second_device(store: DeviceStore) -> None:
    token = "AB" * 32
    a, _ = await store.register("ana", device_in(apns_body(token)))
    b, created = await store.register("ana", device_in(apns_body(token.lower())))
    assert not created and a.id == b.id and b.token == token.lower()


async def test_registration_reenables_a_disabled_token(store: DeviceStore) -> None:
    body = fcm_body()
    device, _ = await store.register("ana", device_in(body))
    assert await store.disable("fcm", body["token"], "Unregistered")
    assert await store.list_active("ana") == []
    again, created = await store.register("ana", device_in(body))
    assert not created and again.disabled_at is None and again.disabled_reason is None
    assert [d.id for d in await store.list_active("ana")] == [device.id]


async def test_token_moves_to_new_owner_and_old_owner_stops_receiving(store: DeviceStore) -> None:
    body = apns_body()
    old, _ = await store.register("ana", device_in(body), roles=["ops"], topics=["news"])
    new, created = await store.register("bob", device_in(body))
    assert created, "a token new to the caller is a new device for them"
    assert new.id != old.id and new.user_id == "bob"
    assert await store.list_for_user("ana") == []
    assert await store.get(old.id) is None
    # Ana's channels went with her ownership: roles/topics she registered no longer reach Bob's device.
    assert await store.list_active_for_audience(roles=["ops"], topics=["news"]) == []
    assert [d.id for d in await store.list_active_for_audience(users=["bob"])] == [new.id]


async def test_list_active_filters_by_provider_and_platform(store: DeviceStore) -> None:
    ios, _ = await store.register("ana", device_in(apns_body()))
    mac, _ = await store.register("ana", device_in(apns_body(platform="macos")))
    web, _ = await store.register("ana", device_in(webpush_body()))
    await store.register("bob", device_in(fcm_body()))
    assert {d.id for d in await store.list_active("ana")} == {ios.id, mac.id, web.id}
    assert {d.id for d in await store.list_active("ana", provider="apns")} == {ios.id, mac.id}
    assert [d.id for d in await store.list_active("ana", platform="web")] == [web.id]
    assert web.p256dh and web.auth and web.token.startswith("https://")


async def test_audience_by_user_role_topic_and_broadcast(store: DeviceStore) -> None:
    a, _ = await store.register("ana", device_in(apns_body()), roles=["courier"])
    b, _ = await store.register("bob", device_in(fcm_body(topics=["orders/42"])))
    c, _ = await store.register("cy", device_in(webpush_body()), topics=["news"])
    dead, _ = await store.register("dee", device_in(fcm_body()), roles=["courier"])
    await store.disable(dead.provider, dead.token, "Unregistered")

    async def ids(**kw: object) -> set[str]:
        return {d.id for d in await store.list_active_for_audience(**kw)}  # type: ignore[arg-type]

    assert await ids(users=["ana"]) == {a.id}
    assert await ids(roles=["courier"]) == {a.id}
    assert await ids(topics=["orders/42"]) == {b.id}
    assert await ids(users=["cy"], topics=["orders/42"]) == {b.id, c.id}
    assert await ids(broadcast=True) == {a.id, b.id, c.id}
    assert await ids() == set()


async def test_remove_only_own_devices(store: DeviceStore) -> None:
    body = fcm_body()
    mine, _ = await store.register("ana", device_in(body))
    assert not await store.remove("bob", device_id=mine.id)
    assert not await store.remove("bob", token=body["token"])
    assert await store.get(mine.id) is not None
    assert await store.remove("ana", token=body["token"])
    assert not await store.remove("ana", device_id=mine.id)


async def test_remove_by_apns_token_ignores_case(store: DeviceStore) -> None:
    token = "CD" * 32
    await store.register("ana", device_in(apns_body(token)))
    assert await store.remove("ana", token=token)
    assert await store.list_for_user("ana") == []


async def test_disable_is_reported_once(store: DeviceStore) -> None:
    body = webpush_body()
    await store.register("ana", device_in(body))
    endpoint = body["subscription"]["endpoint"]
    assert await store.disable("webpush", endpoint, "410 Gone")
    assert not await store.disable("webpush", endpoint, "again")
    assert not await store.disable("fcm", endpoint, "wrong provider")
    (device,) = await store.list_for_user("ana")
    assert device.disabled_reason == "410 Gone" and not device.active


async def test_disable_spares_a_device_registered_again_since(store: DeviceStore, clock: ManualClock) -> None:
    body = apns_body()
    await store.register("ana", device_in(body))
    sent_at = clock()
    clock.advance(10)
    await store.register("ana", device_in(body))  # the app was reinstalled while the push was in flight
    assert not await store.disable("apns", body["token"], "Unregistered", seen_before=sent_at)
    assert await store.disable("apns", body["token"], "Unregistered", seen_before=clock())


async def test_mark_used_updates_many_in_one_call(store: DeviceStore, clock: ManualClock) -> None:
    devices = [(await store.register("ana", device_in(fcm_body())))[0] for _ in range(3)]
    clock.advance(5)
    await store.mark_used([d.id for d in devices[:2]])
    await store.mark_used([])
    used = {d.id: d.last_used_at for d in await store.list_for_user("ana")}
    assert used[devices[0].id] == used[devices[1].id] is not None
    assert used[devices[2].id] is None


async def test_prune_removes_stale_and_long_disabled(store: DeviceStore, clock: ManualClock) -> None:
    await store.register("ana", device_in(apns_body()), topics=["t"])  # goes stale
    dead, _ = await store.register("ana", device_in(fcm_body()))
    await store.disable(dead.provider, dead.token, "Unregistered")
    clock.advance(60 * DAY)
    fresh, _ = await store.register("ana", device_in(webpush_body()))
    recently_dead, _ = await store.register("bob", device_in(fcm_body()))
    await store.disable(recently_dead.provider, recently_dead.token, "Unregistered")
    clock.advance(31 * DAY)  # stale/dead are 91 days old; fresh and recently_dead 31
    report = await store.prune()
    assert (report.stale, report.disabled, report.total) == (1, 1, 2)
    remaining = {d.id for u in ("ana", "bob") for d in await store.list_for_user(u)}
    assert remaining == {fresh.id, recently_dead.id}
    assert await store.list_active_for_audience(topics=["t"]) == []
    assert (await store.prune()).total == 0


async def test_prune_counts_each_row_once(store: DeviceStore, clock: ManualClock) -> None:
    await store.register("ana", device_in(apns_body()))
    dead, _ = await store.register("ana", device_in(fcm_body()))
    await store.disable(dead.provider, dead.token, "Unregistered")
    clock.advance(91 * DAY)
    report = await store.prune()
    assert (report.stale, report.disabled) == (1, 1)


async def test_admin_list_pages_without_gaps_or_repeats(store: DeviceStore) -> None:
    ids = {(await store.register(f"u{i % 3}", device_in(fcm_body())))[0].id for i in range(7)}
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        page, cursor = await store.admin_list(user_id=None, limit=3, cursor=cursor)
        seen += [d.id for d in page]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 7
    only_u0, nxt = await store.admin_list(user_id="u0", limit=10, cursor=None)
    assert {d.user_id for d in only_u0} == {"u0"} and len(only_u0) == 3 and nxt is None


async def test_long_fcm_token_is_stored_and_unique(store: DeviceStore) -> None:
    token = "x" * 4096
    a, created_a = await store.register("ana", device_in(fcm_body(token)))
    b, created_b = await store.register("ana", device_in(fcm_body(token)))
    assert created_a and not created_b and a.id == b.id and b.token == token


async def test_50_concurrent_registrations_of_one_token_leave_one_row(store: DeviceStore) -> None:
    body = apns_body()
    users = [f"user{i}" for i in range(50)]
    started = time.perf_counter()
    async with asyncio.timeout(60):
        results = await asyncio.gather(*(store.register(u, device_in(body), roles=[f"r-{u}"]) for u in users))
    elapsed = time.perf_counter() - started
    owners = [u for u in users if await store.list_for_user(u)]
    assert len(owners) == 1, owners
    (device,) = await store.list_active_for_audience(broadcast=True)
    assert device.user_id == owners[0]
    # Only the final owner's channel survives; the other 49 owners' roles were dropped with their ownership.
    reached = await store.list_active_for_audience(roles=[f"r-{u}" for u in users])
    assert [d.id for d in reached] == [device.id]
    assert (await store.list_active_for_audience(roles=[f"r-{owners[0]}"]))[0].id == device.id
    assert sum(created for _, created in results) >= 1
    print(f"50 concurrent registrations of one token: {elapsed * 1000:.0f} ms on {store.engine.dialect.name}")
