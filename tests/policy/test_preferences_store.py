"""PreferencesStore on SQLite and the real PostgreSQL: round trips, the device zone, batches, concurrent writes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from support import ManualClock
from tidings.policy.preferences import InvalidPreferences, Preferences, ScopePrefs, parse_preferences
from tidings.policy.preferences_store import PreferencesStore
from tidings.policy.quiet_hours import quiet_until
from tidings.policy.tables import user_preferences
from tidings.registry.tables import devices

FULL = {
    "push": True,
    "quiet_hours": {"start": "22:00", "end": "07:00", "weekdays": ["fri"], "timezone": "Pacific/Chatham",
                    "mode": "hold"},
    "scopes": {"conversation:42": {"muted": True, "muted_until": "2027-01-15T16:00:00Z"},
               "message.new": {"push": False}},
}  # fmt: skip


@pytest.fixture
def store(engine: AsyncEngine, clock: ManualClock) -> PreferencesStore:
    return PreferencesStore(engine, clock=clock, max_scopes=20)


async def add_device(engine: AsyncEngine, user: str, timezone: str | None, seen: float) -> None:
    when = datetime.fromtimestamp(seen, UTC)
    async with engine.begin() as conn:
        await conn.execute(
            insert(devices).values(
                id=uuid.uuid4().hex, user_id=user, provider="fcm", platform="android", token=uuid.uuid4().hex,
                token_hash=uuid.uuid4().hex + uuid.uuid4().hex, timezone=timezone, created_at=when,
                updated_at=when, last_seen_at=when,
            )
        )  # fmt: skip


async def test_put_then_get_round_trips(store: PreferencesStore) -> None:
    assert await store.get("alice") is None
    prefs = parse_preferences(FULL)
    assert await store.put("alice", prefs) == prefs
    got = await store.get("alice")
    assert got is not None and got.document() == FULL
    assert await store.get("bob") is None


async def test_put_replaces_the_whole_document(store: PreferencesStore) -> None:
    await store.put("alice", parse_preferences(FULL))
    await store.put("alice", parse_preferences({"push": False}))
    got = await store.get("alice")
    assert got is not None and got.document() == {"push": False}


async def test_patch_merges_into_the_stored_document(store: PreferencesStore, clock: ManualClock) -> None:
    await store.put("alice", parse_preferences(FULL))
    out = await store.patch(
        "alice",
        {
            "quiet_hours": {"weekdays": None},
            "scopes": {"message.new": None, "conversation:7": {"stream": False}},
        },
    )
    got = await store.get("alice")
    assert got == out
    assert got is not None and got.quiet_hours is not None and got.quiet_hours.weekdays is None
    assert set(got.scopes) == {"conversation:42", "conversation:7"}
    assert (await store.patch("bob", {"push": False})).document() == {
        "push": False
    }  # a first write patches {}


async def test_a_refused_patch_changes_nothing(store: PreferencesStore) -> None:
    await store.put("alice", parse_preferences(FULL))
    with pytest.raises(InvalidPreferences) as caught:
        await store.patch("alice", {"quiet_hours": {"timezone": "Nowhere/Land"}})
    assert caught.value.field == "quiet_hours.timezone"
    with pytest.raises(InvalidPreferences):
        await store.patch("carol", {"quiet_hours": {"start": "22:00"}})
    assert (await store.get("alice")) == parse_preferences(FULL)
    assert await store.get("carol") is None  # the row made to lock it rolled back with the refusal


async def test_put_scope_and_delete_scope(store: PreferencesStore) -> None:
    await store.put_scope("alice", "conversation:1", ScopePrefs(muted=True))
    await store.put_scope("alice", "conversation:2", ScopePrefs(push=False))
    await store.put_scope("alice", "conversation:1", ScopePrefs(stream=False))  # replaces, does not merge
    got = await store.get("alice")
    assert got is not None and got.scopes == {
        "conversation:1": ScopePrefs(stream=False), "conversation:2": ScopePrefs(push=False),
    }  # fmt: skip
    assert await store.delete_scope("alice", "conversation:1") is True
    assert await store.delete_scope("alice", "conversation:1") is False
    assert await store.delete_scope("alice", "not a scope") is False
    got = await store.get("alice")
    assert got is not None and list(got.scopes) == ["conversation:2"]
    with pytest.raises(InvalidPreferences) as caught:
        await store.put_scope("alice", "bad scope", ScopePrefs(muted=True))
    assert caught.value.field == "scope"


async def test_the_scope_budget_is_enforced_on_every_write(store: PreferencesStore) -> None:
    for i in range(20):
        await store.put_scope("alice", f"s{i}", ScopePrefs(muted=True))
    with pytest.raises(InvalidPreferences) as caught:
        await store.put_scope("alice", "one-more", ScopePrefs(muted=True))
    assert caught.value.field == "scopes" and "at most 20" in caught.value.errors[0]["message"]
    with pytest.raises(InvalidPreferences):
        await store.patch("alice", {"scopes": {"one-more": {"muted": True}}})
    with pytest.raises(InvalidPreferences):
        await store.put("bob", parse_preferences({"scopes": {f"s{i}": {"muted": True} for i in range(21)}}))
    await store.put_scope("alice", "s0", ScopePrefs(push=False))  # replacing one stays within the budget
    got = await store.get("alice")
    assert got is not None and len(got.scopes) == 20


async def test_user_ids_are_checked(store: PreferencesStore) -> None:
    with pytest.raises(InvalidPreferences) as caught:
        await store.put("", Preferences())
    assert caught.value.field == "user_id"
    with pytest.raises(InvalidPreferences):
        await store.patch("x" * 257, {"push": False})
    assert await store.get_many(["", "a\x00b"]) == {}


async def test_quiet_hours_default_to_the_most_recent_devices_zone(
    store: PreferencesStore, engine: AsyncEngine
) -> None:
    await store.put("alice", parse_preferences({"quiet_hours": {"start": "22:00", "end": "07:00"}}))
    now = datetime(2027, 1, 15, 22, 30, tzinfo=UTC).timestamp()
    got = await store.get("alice")
    assert got is not None and str(got.quiet_zone()) == "UTC"  # no device yet
    await add_device(engine, "alice", "Europe/Berlin", seen=now - 86400)
    await add_device(engine, "alice", None, seen=now - 10)  # newer, but says nothing about its zone
    got = await store.get("alice")
    assert got is not None and str(got.quiet_zone()) == "Europe/Berlin" and quiet_until(got, now) is not None
    await add_device(engine, "alice", "America/New_York", seen=now - 3600)  # she flew to New York
    got = await store.get("alice")
    assert got is not None and str(got.quiet_zone()) == "America/New_York" and quiet_until(got, now) is None
    assert got.document() == {"quiet_hours": {"start": "22:00", "end": "07:00", "mode": "hold"}}  # not stored


async def test_get_many_answers_a_batch_and_leaves_out_users_without_preferences(
    store: PreferencesStore, engine: AsyncEngine
) -> None:
    for i in range(0, 1500, 3):
        await store.put(f"user-{i}", parse_preferences({"scopes": {f"c:{i}": {"muted": True}}}))
    await add_device(engine, "user-3", "Asia/Kathmandu", seen=1_800_000_000)
    found = await store.get_many(f"user-{i}" for i in range(1500))  # more than one MAX_BATCH
    assert set(found) == {f"user-{i}" for i in range(0, 1500, 3)}
    assert all(list(prefs.scopes) == [f"c:{user[5:]}"] for user, prefs in found.items())
    assert str(found["user-3"].quiet_zone()) == "Asia/Kathmandu"
    assert await store.get_many([]) == {}


async def test_concurrent_patches_lose_nothing(engine: AsyncEngine, clock: ManualClock) -> None:
    store = PreferencesStore(engine, clock=clock)
    await store.patch("alice", {"push": True})
    async with asyncio.timeout(60):
        await asyncio.gather(
            *(store.patch("alice", {"scopes": {f"conversation:{i}": {"muted": True}}}) for i in range(24))
        )
        await asyncio.gather(
            *(store.put_scope("alice", f"topic:{i}", ScopePrefs(stream=False)) for i in range(8)),
            *(store.delete_scope("alice", f"conversation:{i}") for i in range(0, 24, 2)),
        )
    got = await store.get("alice")
    assert got is not None and got.push is True
    assert set(got.scopes) == {f"conversation:{i}" for i in range(1, 24, 2)} | {
        f"topic:{i}" for i in range(8)
    }


async def test_concurrent_first_patches_of_a_new_user_both_land(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # Both writers find no row: the insert-if-missing then lock must serialise them, not fail one.
    store = PreferencesStore(engine, clock=clock)
    async with asyncio.timeout(30):
        await asyncio.gather(
            store.patch("new", {"push": False}), store.patch("new", {"scopes": {"a": {"muted": True}}})
        )
    got = await store.get("new")
    assert got is not None and got.push is False and "a" in got.scopes


async def test_writes_record_the_clock(
    store: PreferencesStore, engine: AsyncEngine, clock: ManualClock
) -> None:
    await store.put("alice", Preferences())
    clock.advance(60)
    await store.patch("alice", {"push": False})
    async with engine.connect() as conn:
        updated = (await conn.execute(select(user_preferences.c.updated_at))).scalar_one()
    assert updated.timestamp() == clock.now
    assert await store.delete("alice") is True and await store.get("alice") is None


async def test_users_sharing_a_document_keep_their_own_zones(
    store: PreferencesStore, engine: AsyncEngine
) -> None:
    same = parse_preferences({"quiet_hours": {"start": "22:00", "end": "07:00"}})
    for user, zone in (("alice", "Europe/Berlin"), ("bob", "Asia/Tokyo"), ("carol", None)):
        await store.put(user, same)
        await add_device(engine, user, zone, seen=1_800_000_000)
    for _ in range(2):  # the second read comes from the store's cache of parsed documents
        found = await store.get_many(["alice", "bob", "carol"])
        assert {user: str(prefs.quiet_zone()) for user, prefs in found.items()} == {
            "alice": "Europe/Berlin", "bob": "Asia/Tokyo", "carol": "UTC",
        }  # fmt: skip
        found["alice"].with_device_timezone("America/New_York")  # a copy: the cached document is not touched
