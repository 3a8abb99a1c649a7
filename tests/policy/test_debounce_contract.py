"""One debounce contract for both stores (memory and Redis), driven by a clock we move by hand: leading and
trailing edges, the merge, spacing, window edges, sliding, budgets and leases."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from itertools import pairwise
from typing import Any

import pytest
from redis.asyncio import Redis

from support import ManualClock
from tidings.policy import (
    Closed,
    DebounceFlusher,
    DebounceOptions,
    DebounceStore,
    Merged,
    create_debounce,
)

W = 1.0
MakeStore = Callable[..., DebounceStore]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def make_store(request: pytest.FixtureRequest, clock: ManualClock) -> AsyncIterator[MakeStore]:
    made: list[DebounceStore] = []
    clients: list[Redis] = []

    def build(**opts: Any) -> DebounceStore:
        options = DebounceOptions(clock=clock, **opts)
        if request.param == "memory":
            store = create_debounce("memory://", options=options)
        else:
            settings: dict[str, str] = request.getfixturevalue("redis_settings")
            clients.append(Redis.from_url(settings["bus_url"]))
            store = create_debounce(
                settings["bus_url"], prefix=settings["redis_prefix"], options=options, client=clients[-1]
            )
        made.append(store)
        return store

    yield build
    for store in made:
        await store.close()
    for client in clients:
        await client.aclose()


@pytest.fixture
def store(make_store: MakeStore) -> DebounceStore:
    return make_store()


async def test_a_burst_is_one_leading_and_one_trailing_delivery_with_the_merged_data(
    store: DebounceStore, clock: ManualClock
) -> None:
    start = clock.now
    events = [
        (
            f"ev-{i}",
            {
                "todayCountChanged": i == 3,
                "changedScopes": ["today"] if i % 2 else ["inbox"],
                "updatedTaskIds": [i, i + 1],
                "version": i,
            },
        )
        for i in range(40)
    ]
    offers = []
    for event_id, data in events:
        offers.append(await store.offer("alice|tasks", event_id, data, window=W))
        clock.advance(0.01)
    assert [offer.deliver for offer in offers] == [True] + [False] * 39
    assert offers[0].merged == Merged(events[0][1], ("ev-0",), 1)
    assert {offer.deadline for offer in offers} == {start + W}
    assert await store.claim_due() == []

    clock.now = start + W
    [closed] = await store.claim_due()
    assert closed.key == "alice|tasks"
    assert closed.closed_at == pytest.approx(start + W)
    assert closed.merged.data == {
        "todayCountChanged": True,
        "changedScopes": ["today", "inbox"],
        "updatedTaskIds": list(range(1, 41)),
        "version": 39,
    }
    assert closed.merged.event_ids == tuple(f"ev-{i}" for i in range(1, 40))
    assert closed.merged.count == 39
    assert closed.merged.latest_id == "ev-39"
    await store.ack(closed)
    clock.advance(W)
    assert await store.claim_due() == []  # the window after the trailing edge ended quietly


async def test_merge_rules(store: DebounceStore, clock: ManualClock) -> None:
    await store.offer("k", "e0", {"x": 1}, window=W)
    held = [
        {"tags": ["a", {"p": 1, "q": 2}], "urgent": False, "title": "one", "kind": [1], "keep": "me"},
        {"tags": [{"q": 2, "p": 1}, "b", "a"], "urgent": True, "title": "two", "kind": "now scalar"},
        {
            "tags": ["c"],
            "urgent": False,
            "title": None,
            "big": 12345678901234567890,
            "f": 0.1,
            "s": "é/\u2603",
        },
        {"ids": [9007199254740993, 1.5e300, -0.0], "nested": {"b": [1], "a": {"z": True}}},
    ]
    for i, data in enumerate(held, 1):
        await store.offer("k", f"e{i}", data, window=W)
    clock.advance(W)
    [closed] = await store.claim_due()
    assert closed.merged.data == {
        "tags": ["a", {"p": 1, "q": 2}, "b", "c"],
        "urgent": True,
        "title": None,
        "kind": "now scalar",
        "keep": "me",
        "big": 12345678901234567890,
        "f": 0.1,
        "s": "é/\u2603",
        "ids": [9007199254740993, 1.5e300, -0.0],
        "nested": {"b": [1], "a": {"z": True}},
    }
    assert list(closed.merged.data) == [
        "tags",
        "urgent",
        "title",
        "kind",
        "keep",
        "big",
        "f",
        "s",
        "ids",
        "nested",
    ]
    assert (closed.merged.event_ids, closed.merged.count, closed.merged.truncated) == (
        ("e1", "e2", "e3", "e4"),
        4,
        (),
    )


async def test_lists_and_ids_are_bounded_and_the_count_stays_exact(
    make_store: MakeStore, clock: ManualClock
) -> None:
    store = make_store(max_list_items=5, max_ids=3)
    await store.offer("k", "e0", {"ids": [0]}, window=W)
    for i in range(1, 10):
        await store.offer("k", f"e{i}", {"ids": [i], "other": [i]}, window=W)
    clock.advance(W)
    [closed] = await store.claim_due()
    assert closed.merged.data == {"ids": [5, 6, 7, 8, 9], "other": [5, 6, 7, 8, 9]}
    assert closed.merged.truncated == ("ids", "other")
    assert (closed.merged.event_ids, closed.merged.count) == (("e7", "e8", "e9"), 9)


async def test_an_event_at_the_instant_a_window_is_due_goes_at_once_with_the_held_ones(
    store: DebounceStore, clock: ManualClock
) -> None:
    start = clock.now
    await store.offer("k", "e0", {"n": [0]}, window=W)
    clock.advance(0.5)
    assert not (await store.offer("k", "e1", {"n": [1]}, window=W)).deliver
    clock.now = start + W  # due, and no claim has run yet
    offer = await store.offer("k", "e2", {"n": [2]}, window=W)
    assert offer.deliver and offer.merged is not None
    assert (offer.merged.data, offer.merged.event_ids, offer.merged.count) == ({"n": [1, 2]}, ("e1", "e2"), 2)
    assert offer.deadline == pytest.approx(start + 2 * W)
    assert await store.claim_due() == []  # delivered once, not again by the flusher
    clock.advance(W)
    assert await store.claim_due() == []


async def test_an_event_at_the_instant_after_the_claim_is_held_for_the_next_window(
    store: DebounceStore, clock: ManualClock
) -> None:
    start = clock.now
    await store.offer("k", "e0", {"n": [0]}, window=W)
    clock.advance(0.5)
    await store.offer("k", "e1", {"n": [1]}, window=W)
    clock.now = start + W
    [first] = await store.claim_due()
    await store.ack(first)
    offer = await store.offer("k", "e2", {"n": [2]}, window=W)
    assert not offer.deliver and offer.deadline == pytest.approx(start + 2 * W)
    assert await store.claim_due() == []
    clock.now = start + 2 * W
    [second] = await store.claim_due()
    assert (first.merged.event_ids, second.merged.event_ids) == (("e1",), ("e2",))


async def test_a_window_that_ends_with_nothing_held_lets_the_next_event_lead(
    store: DebounceStore, clock: ManualClock
) -> None:
    start = clock.now
    await store.offer("k", "e0", {}, window=W)
    clock.now = start + W - 0.001
    assert (await store.offer("other", "x", {}, window=W)).deliver  # another key: its own window
    assert await store.claim_due() == []
    clock.now = start + W
    assert await store.claim_due() == []
    offer = await store.offer("k", "e1", {}, window=W)
    assert offer.deliver and offer.merged == Merged({}, ("e1",), 1)


async def test_keys_have_independent_windows(store: DebounceStore, clock: ManualClock) -> None:
    assert (await store.offer("alice|tasks", "a0", {}, window=W)).deliver
    assert (await store.offer("bob|tasks", "b0", {}, window=W)).deliver
    assert (await store.offer("alice|inbox", "c0", {}, window=60)).deliver
    assert not (await store.offer("alice|tasks", "a1", {}, window=W)).deliver
    assert not (await store.offer("alice|inbox", "c1", {}, window=60)).deliver
    clock.advance(W)
    [tasks] = await store.claim_due()
    assert tasks.key == "alice|tasks"
    await store.ack(tasks)
    clock.advance(59)
    assert [c.key for c in await store.claim_due()] == ["alice|inbox"]


async def test_a_sliding_window_closes_after_quiet_or_at_max_wait(
    store: DebounceStore, clock: ManualClock
) -> None:
    start = clock.now
    await store.offer("k", "e0", {}, window=W, max_wait=3)
    deadlines = []
    for i in range(1, 6):  # one event every 0.5 s keeps pushing the close, until max_wait caps it
        clock.now = start + 0.5 * i
        deadlines.append((await store.offer("k", f"e{i}", {}, window=W, max_wait=3)).deadline - start)
    assert deadlines == pytest.approx([1.5, 2.0, 2.5, 3.0, 3.0])
    clock.now = start + 2.9
    assert await store.claim_due() == []
    clock.now = start + 3.0
    [closed] = await store.claim_due()
    assert closed.merged.count == 5
    # quiet after one held event: closes `window` after it
    clock.now = start + 3.2
    assert (await store.offer("k", "e6", {}, window=W, max_wait=3)).deadline == pytest.approx(start + 4.2)


@pytest.mark.parametrize("max_wait", [None, 3.0])
async def test_random_traffic_never_delivers_closer_than_the_window_and_loses_nothing(
    store: DebounceStore, clock: ManualClock, max_wait: float | None
) -> None:
    rng = random.Random(1234)
    start = clock.now
    actions: list[tuple[float, str, str]] = []
    at = 0.0
    for i in range(150):
        at += rng.choice([0.0, 0.05, 0.2, 0.5, 1.0, 1.7])
        actions.append((round(at, 3), "offer", f"ev-{i}"))
    poll = 0.0
    while poll < at + 5:
        poll += rng.choice([0.05, 0.1, 0.3])
        actions.append((round(poll, 3), "claim", ""))
    tie = {a: rng.random() for a in actions}  # at one instant, claims and offers in either order
    actions.sort(key=lambda a: (a[0], tie[a]))
    delivered: list[tuple[float, tuple[str, ...]]] = []
    offered_at: dict[str, float] = {}
    for when, kind, event_id in actions:
        clock.now = start + when
        if kind == "offer":
            offered_at[event_id] = when
            offer = await store.offer("k", event_id, {"ids": [event_id]}, window=W, max_wait=max_wait)
            if offer.deliver:
                assert offer.merged is not None
                delivered.append((when, offer.merged.event_ids))
        else:
            for closed in await store.claim_due():
                delivered.append((when, closed.merged.event_ids))
                await store.ack(closed)
    gaps = [b[0] - a[0] for a, b in pairwise(delivered)]
    assert min(gaps) >= W - 1e-9
    ids = [event_id for _, batch in delivered for event_id in batch]
    assert sorted(ids) == sorted(offered_at)  # every event exactly once
    wait_bound = (max_wait or W) + 0.3  # plus at most one poll period
    assert all(when - offered_at[e] <= wait_bound + 1e-9 for when, batch in delivered for e in batch)


async def test_an_unacked_trailing_edge_is_handed_out_again_after_the_lease(
    make_store: MakeStore, clock: ManualClock
) -> None:
    store = make_store(lease=5, max_attempts=2)
    await store.offer("k", "e0", {}, window=W)
    await store.offer("k", "e1", {"v": 1}, window=W)
    clock.advance(W)
    [first] = await store.claim_due()
    clock.advance(4.9)
    assert await store.claim_due() == []
    clock.advance(0.1)
    [again] = await store.claim_due()
    assert (again.key, again.merged, again.token, again.attempt) == ("k", first.merged, first.token, 2)
    assert again.closed_at == first.closed_at
    clock.advance(5)
    assert await store.claim_due() == []  # max_attempts reached: dropped (and logged)

    assert (await store.offer("k", "e2", {}, window=W)).deliver
    await store.offer("k", "e3", {}, window=W)
    clock.advance(W)
    [third] = await store.claim_due()
    await store.ack(third)
    clock.advance(10)
    assert await store.claim_due() == []


async def test_the_flusher_delivers_closed_windows_and_acks_them(
    make_store: MakeStore, clock: ManualClock
) -> None:
    store = make_store(lease=5)
    got: list[Closed] = []
    fail = {"k2"}

    async def deliver(closed: Closed) -> None:
        if closed.key in fail:
            raise RuntimeError("provider down")
        got.append(closed)

    flusher = DebounceFlusher(store, deliver, clock=clock, batch=2)
    for key in ("k1", "k2", "k3"):
        await store.offer(key, f"{key}-0", {}, window=W)
        await store.offer(key, f"{key}-1", {}, window=W)
    assert await flusher.run_once() == 0
    clock.advance(W)
    assert await flusher.run_once() == 2  # two batches of two: k1 and k3 delivered, k2 failed
    assert sorted(c.key for c in got) == ["k1", "k3"]
    assert (flusher.delivered, flusher.failed) == (2, 1)
    fail.clear()
    clock.advance(5)
    assert await flusher.run_once() == 1  # k2's lease ran out: handed out again
    assert got[-1].key == "k2" and got[-1].attempt == 2
    clock.advance(5)
    assert await flusher.run_once() == 0


async def test_a_started_flusher_closes_windows_on_its_own(make_store: MakeStore, clock: ManualClock) -> None:
    store = make_store()
    got: list[Closed] = []

    async def deliver(closed: Closed) -> None:
        got.append(closed)

    flusher = DebounceFlusher(store, deliver, clock=clock, poll_seconds=0.01)
    await flusher.start()
    try:
        await store.offer("k", "e0", {}, window=W)
        await store.offer("k", "e1", {}, window=W)
        clock.advance(W)
        async with asyncio.timeout(5):
            while not got:
                await asyncio.sleep(0.01)
    finally:
        await flusher.stop()
    assert [c.merged.event_ids for c in got] == [("e1",)]


async def test_bad_windows_are_refused(store: DebounceStore) -> None:
    with pytest.raises(ValueError):
        await store.offer("k", "e", {}, window=0)
    with pytest.raises(ValueError):
        await store.offer("k", "e", {}, window=2, max_wait=1)
