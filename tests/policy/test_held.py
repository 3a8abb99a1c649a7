"""HeldStore on SQLite and the real PostgreSQL: coalescing holds, claims that go to exactly one worker, leases,
acks, restarts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from policy.conftest import T0
from support import ManualClock
from tidings import db
from tidings.policy.held import MAX_REPLACED_IDS, Held, HeldStore, event_order

RELEASE = T0 + 3600


def eid(n: int) -> str:
    return f"{1_800_000_000_000 + n}-0"


def job(n: int) -> dict[str, Any]:
    return {"event_id": eid(n), "type": "message.new", "data": {"n": n}}


@pytest.fixture
def held(engine: AsyncEngine, clock: ManualClock) -> HeldStore:
    return HeldStore(engine, clock=clock, lease_seconds=30)


def test_event_order_sorts_like_the_ids() -> None:
    assert event_order("1800000000000-9") < event_order("1800000000000-10") < event_order("1800000000001-0")
    with pytest.raises(ValueError):
        event_order("not-an-id")


async def test_holds_coalesce_into_the_latest_with_a_count(held: HeldStore) -> None:
    for n in range(5):
        assert (
            await held.hold("alice", "conversation:42", event_id=eid(n), payload=job(n), release_at=RELEASE)
            == n + 1
        )
    await held.hold("alice", "conversation:7", event_id=eid(9), payload=job(9), release_at=RELEASE)
    await held.hold("bob", "conversation:42", event_id=eid(10), payload=job(10), release_at=RELEASE)
    assert await held.count() == 3
    assert await held.claim_due(RELEASE - 1) == []  # not yet
    released = {(h.user_id, h.scope): h for h in await held.claim_due(RELEASE)}
    alice = released["alice", "conversation:42"]
    assert alice.event_id == eid(4) and alice.payload == job(4)
    assert alice.count == 5 and alice.replaced == 4
    assert alice.replaced_ids == tuple(eid(n) for n in range(4))
    assert alice.release_at == RELEASE and alice.first_held_at == T0
    assert (
        released["alice", "conversation:7"].count == 1
        and released["alice", "conversation:7"].replaced_ids == ()
    )
    assert released["bob", "conversation:42"].event_id == eid(10)


async def test_a_late_hold_of_an_older_event_does_not_replace_the_newer(held: HeldStore) -> None:
    await held.hold("alice", "c", event_id=eid(7), payload=job(7), release_at=RELEASE)
    await held.hold("alice", "c", event_id=eid(3), payload=job(3), release_at=RELEASE)  # arrives late
    [row] = await held.claim_due(RELEASE)
    assert (row.event_id, row.payload, row.count, row.replaced_ids) == (eid(7), job(7), 2, (eid(3),))


async def test_replaced_ids_are_bounded_and_keep_the_most_recent(held: HeldStore) -> None:
    total = MAX_REPLACED_IDS + 15
    for n in range(total):
        await held.hold("alice", "c", event_id=eid(n), payload=job(n), release_at=RELEASE)
    [row] = await held.claim_due(RELEASE)
    assert row.count == total and row.replaced == total - 1
    assert row.replaced_ids == tuple(eid(n) for n in range(total - 1 - MAX_REPLACED_IDS, total - 1))


async def test_the_latest_hold_sets_the_release_time(held: HeldStore) -> None:
    await held.hold("alice", "c", event_id=eid(1), payload=job(1), release_at=RELEASE)
    await held.hold(
        "alice", "c", event_id=eid(2), payload=job(2), release_at=RELEASE + 600
    )  # e.g. a new zone
    assert await held.claim_due(RELEASE) == []
    assert len(await held.claim_due(RELEASE + 600)) == 1


async def test_concurrent_holds_coalesce_without_losing_a_count(held: HeldStore) -> None:
    async with asyncio.timeout(60):
        counts = await asyncio.gather(
            *(held.hold("alice", "c", event_id=eid(n), payload=job(n), release_at=RELEASE) for n in range(30))
        )
    assert sorted(counts) == list(range(1, 31))  # each upsert saw every earlier one
    [row] = await held.claim_due(RELEASE)
    assert row.count == 30 and row.event_id == eid(29) and len(set(row.replaced_ids)) == 29


async def test_claim_then_ack_releases_once(held: HeldStore, clock: ManualClock) -> None:
    await held.hold("alice", "c", event_id=eid(1), payload=job(1), release_at=RELEASE)
    [row] = await held.claim_due(RELEASE)
    assert await held.claim_due(RELEASE + 1) == []  # claimed: nobody else gets it while the lease lasts
    assert await held.ack([row]) == 1
    assert await held.count() == 0
    assert await held.claim_due(RELEASE + 3600) == []
    assert await held.ack([]) == 0


async def test_a_claim_whose_worker_died_is_taken_again_after_the_lease(held: HeldStore) -> None:
    await held.hold("alice", "c", event_id=eid(1), payload=job(1), release_at=RELEASE)
    [lost] = await held.claim_due(RELEASE)  # this worker dies before ack
    assert await held.claim_due(RELEASE + 29) == []
    [again] = await held.claim_due(RELEASE + 30)
    assert again.event_id == lost.event_id and again.claim_id != lost.claim_id
    assert await held.ack([lost]) == 0  # the dead worker's late ack no longer owns the row
    assert await held.ack([again]) == 1


async def test_a_hold_during_a_live_claim_starts_afresh_and_survives_the_ack(
    held: HeldStore, clock: ManualClock
) -> None:
    for n in range(3):
        await held.hold("alice", "c", event_id=eid(n), payload=job(n), release_at=RELEASE)
    clock.now = RELEASE
    [claimed] = await held.claim_due()
    assert claimed.count == 3
    # Quiet again before the release was acked (next night, or a decision racing the edge): a new batch.
    assert await held.hold("alice", "c", event_id=eid(5), payload=job(5), release_at=RELEASE + 86400) == 1
    assert await held.ack([claimed]) == 0  # the new batch is not the one released
    [fresh] = await held.pending("alice")
    assert (fresh.event_id, fresh.count, fresh.replaced_ids, fresh.release_at) == (
        eid(5),
        1,
        (),
        RELEASE + 86400,
    )
    assert fresh.first_held_at == RELEASE


async def test_a_hold_after_an_expired_claim_merges_with_the_unreleased_batch(
    held: HeldStore, clock: ManualClock
) -> None:
    await held.hold("alice", "c", event_id=eid(1), payload=job(1), release_at=RELEASE)
    clock.now = RELEASE
    [dead] = await held.claim_due()
    clock.now = RELEASE + 60  # the lease (30 s) ran out: that worker never released it
    assert await held.hold("alice", "c", event_id=eid(2), payload=job(2), release_at=RELEASE + 120) == 2
    assert await held.ack([dead]) == 0
    [row] = await held.claim_due(RELEASE + 120)
    assert (row.event_id, row.count, row.replaced_ids) == (eid(2), 2, (eid(1),))


async def test_claims_are_limited_and_oldest_first(held: HeldStore) -> None:
    for n in range(10):
        await held.hold(f"user-{n}", "c", event_id=eid(n), payload=job(n), release_at=RELEASE + n)
    first = await held.claim_due(RELEASE + 100, limit=4)
    assert [h.user_id for h in first] == [f"user-{n}" for n in range(4)]
    rest = await held.claim_due(RELEASE + 100, limit=100)
    assert [h.user_id for h in rest] == [f"user-{n}" for n in range(4, 10)]


async def test_wake_makes_a_users_held_pushes_due_now(held: HeldStore, clock: ManualClock) -> None:
    await held.hold("alice", "a", event_id=eid(1), payload=job(1), release_at=RELEASE)
    await held.hold("alice", "b", event_id=eid(2), payload=job(2), release_at=RELEASE)
    await held.hold("bob", "a", event_id=eid(3), payload=job(3), release_at=RELEASE)
    assert await held.wake("alice") == 2
    assert {(h.user_id, h.scope) for h in await held.claim_due(clock.now)} == {("alice", "a"), ("alice", "b")}


async def test_payload_bytes_are_kept_as_they_are_and_bounded(held: HeldStore) -> None:
    await held.hold("alice", "c", event_id=eid(1), payload=b'{"raw":true}', release_at=RELEASE)
    [row] = await held.pending()
    assert row.payload == {"raw": True}
    with pytest.raises(ValueError):
        await held.hold("alice", "c", event_id=eid(2), payload={"x": "y" * 70_000}, release_at=RELEASE)


async def test_held_pushes_survive_a_restart(migrated_url: str, clock: ManualClock) -> None:
    first = db.create_engine(migrated_url)
    try:
        await HeldStore(first, clock=clock).hold(
            "alice", "c", event_id=eid(1), payload=job(1), release_at=RELEASE
        )
    finally:
        await first.dispose()  # the worker process goes away
    second = db.create_engine(migrated_url)
    try:
        [row] = await HeldStore(second, clock=clock).claim_due(RELEASE)
    finally:
        await second.dispose()
    assert row.payload == job(1)


async def test_two_claimers_each_get_every_due_row_exactly_once(
    migrated_url: str, clock: ManualClock
) -> None:
    # Two workers with engines (connection pools) of their own, claiming in small batches until nothing is due.
    engines = [db.create_engine(migrated_url) for _ in range(2)]
    try:
        setup = HeldStore(engines[0], clock=clock)
        rows = 240
        for n in range(rows):
            await setup.hold(
                f"user-{n % 80}", f"scope-{n // 80}", event_id=eid(n), payload=job(n), release_at=RELEASE
            )

        async def claimer(engine: AsyncEngine) -> list[Held]:
            store = HeldStore(engine, clock=clock)
            mine: list[Held] = []
            while batch := await store.claim_due(RELEASE, limit=7):
                mine += batch
                await asyncio.sleep(0)  # let the other claimer interleave between batches
            return mine

        async with asyncio.timeout(90):
            a, b = await asyncio.gather(claimer(engines[0]), claimer(engines[1]))
    finally:
        for engine in engines:
            await engine.dispose()
    keys_a = {(h.user_id, h.scope) for h in a}
    keys_b = {(h.user_id, h.scope) for h in b}
    assert len(a) == len(keys_a) and len(b) == len(keys_b)
    assert not keys_a & keys_b
    assert len(keys_a | keys_b) == rows
    assert a and b  # both took part


async def test_defer_hands_a_claimed_row_back_with_its_count(held: HeldStore) -> None:
    for n in range(3):
        await held.hold("alice", "c", event_id=eid(n), payload=job(n), release_at=RELEASE)
    [claimed] = await held.claim_due(RELEASE)
    assert await held.defer(claimed, RELEASE + 7200) is True  # still quiet in the zone she flew to
    assert await held.defer(claimed, RELEASE + 9000) is False  # that claim is spent
    assert await held.claim_due(RELEASE + 7199) == []
    [again] = await held.claim_due(RELEASE + 7200)
    assert (again.event_id, again.count, again.replaced_ids) == (eid(2), 3, (eid(0), eid(1)))
