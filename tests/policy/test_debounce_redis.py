"""Debounce on the real Redis across processes: four clients and four real processes bursting into one window,
concurrent claimers, a window whose process was SIGKILLed, a lease whose claimer died, key expiry, and the
Lua merge agreeing with the Python one."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from support import free_port, frozen_clock
from tidings.errors import BusUnavailable
from tidings.policy import Closed, DebounceFlusher, DebounceOptions, MemoryDebounce
from tidings.policy.debounce_redis import RedisDebounce

from .policy_rig import kill, read_line, spawn

pytestmark = pytest.mark.redis

W = 1.0
T0 = 1_800_000_000.0
Make = Callable[..., RedisDebounce]

CHILD = """
import asyncio, sys
from redis.asyncio import Redis
from tidings.policy import DebounceOptions
from tidings.policy.debounce_redis import RedisDebounce

async def main():
    url, prefix, name, count, now, mode = sys.argv[1:7]
    client = Redis.from_url(url)
    options = DebounceOptions(clock=lambda: float(now), max_ids=1000, max_list_items=1000, lease=5)
    store = RedisDebounce(prefix=prefix, client=client, options=options)
    if mode == "claim":
        closed = await store.claim_due()
        print("claimed " + ",".join(c.key for c in closed), flush=True)
        await asyncio.Event().wait()  # dies before it acks
    print("ready", flush=True)
    if mode == "barrier":
        await client.blpop([prefix + ":go"], timeout=30)
    leads = []
    for i in range(int(count)):
        offer = await store.offer("burst", f"{name}-{i}", {"ids": [f"{name}-{i}"]}, window=1.0)
        if offer.deliver:
            leads.append(f"{name}-{i}")
    print("leads " + ",".join(leads), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture
async def make(redis_settings: dict[str, str]) -> AsyncIterator[Make]:
    """Stores on one prefix, each with its own client (a 'process' of its own)."""
    clients: list[Redis] = []

    def build(clock: Callable[[], float], **opts: Any) -> RedisDebounce:
        clients.append(Redis.from_url(redis_settings["bus_url"]))
        options = DebounceOptions(clock=clock, **opts)
        return RedisDebounce(prefix=redis_settings["redis_prefix"], options=options, client=clients[-1])

    yield build
    for client in clients:
        await client.aclose()


async def test_four_clients_bursting_at_once_yield_one_leading_and_one_trailing_edge(make: Make) -> None:
    clock = frozen_clock(T0)
    stores = [make(clock, max_ids=1000, max_list_items=1000) for _ in range(4)]

    async def burst(n: int) -> list[bool]:
        return [
            (await stores[n].offer("u|tasks", f"p{n}-{i}", {"ids": [f"p{n}-{i}"]}, window=W)).deliver
            for i in range(25)
        ]

    results = await asyncio.gather(*(burst(n) for n in range(4)))
    assert sum(sum(r) for r in results) == 1
    lead = next(f"p{n}-{i}" for n, r in enumerate(results) for i, d in enumerate(r) if d)
    clock.advance(W)
    claims = await asyncio.gather(*(store.claim_due() for store in stores))  # four flushers race
    closed = [c for batch in claims for c in batch]
    assert len(closed) == 1
    everyone = {f"p{n}-{i}" for n in range(4) for i in range(25)}
    assert closed[0].merged.count == 99
    assert set(closed[0].merged.event_ids) == everyone - {lead}
    assert set(closed[0].merged.data["ids"]) == everyone - {lead}


async def test_four_processes_bursting_at_once_yield_one_leading_and_one_trailing_edge(
    make: Make, redis_settings: dict[str, str]
) -> None:
    url, prefix = redis_settings["bus_url"], redis_settings["redis_prefix"]
    children = [await spawn(CHILD, url, prefix, f"p{n}", "25", str(T0), "barrier") for n in range(4)]
    try:
        for child in children:
            assert await read_line(child) == "ready"
        client = Redis.from_url(url)
        await client.rpush(f"{prefix}:go", *"abcd")  # all four start at once
        await client.aclose()
        leads = [await read_line(child) for child in children]
    finally:
        for child in children:
            await kill(child)
    lead_ids = [i for line in leads for i in line.removeprefix("leads").strip().split(",") if i]
    assert len(lead_ids) == 1
    [closed] = await make(frozen_clock(T0 + W), max_ids=1000, max_list_items=1000).claim_due()
    everyone = {f"p{n}-{i}" for n in range(4) for i in range(25)}
    assert closed.merged.count == 99
    assert set(closed.merged.event_ids) == everyone - set(lead_ids)


async def test_a_window_whose_process_was_killed_is_closed_by_another(
    make: Make, redis_settings: dict[str, str]
) -> None:
    url, prefix = redis_settings["bus_url"], redis_settings["redis_prefix"]
    child = await spawn(CHILD, url, prefix, "dead", "5", str(T0), "plain")
    try:
        assert await read_line(child) == "ready"
        assert await read_line(child) == "leads dead-0"
    finally:
        await kill(child)
    got: list[Closed] = []

    async def deliver(closed: Closed) -> None:
        got.append(closed)

    clock = frozen_clock(T0 + W)
    flusher = DebounceFlusher(make(clock), deliver, clock=clock)
    assert await flusher.run_once() == 1
    assert [c.merged.event_ids for c in got] == [tuple(f"dead-{i}" for i in range(1, 5))]


async def test_a_trailing_edge_whose_claimer_died_before_acking_is_handed_out_again(
    make: Make, redis_settings: dict[str, str]
) -> None:
    url, prefix = redis_settings["bus_url"], redis_settings["redis_prefix"]
    store = make(frozen_clock(T0), lease=5)
    await store.offer("k", "e0", {}, window=W)
    await store.offer("k", "e1", {}, window=W)
    child = await spawn(CHILD, url, prefix, "claimer", "0", str(T0 + W), "claim")
    try:
        assert await read_line(child) == "claimed k"
    finally:
        await kill(child)
    assert await make(frozen_clock(T0 + W + 4.9)).claim_due() == []
    [again] = await make(frozen_clock(T0 + W + 5)).claim_due()
    assert (again.key, again.merged.event_ids, again.attempt) == ("k", ("e1",), 2)


async def test_keys_expire_and_nothing_is_left_after_the_ack(
    make: Make, redis_settings: dict[str, str]
) -> None:
    clock = frozen_clock(T0)
    store = make(clock, key_slack=60)
    await store.offer("k", "e0", {}, window=W, max_wait=3)
    await store.offer("k", "e1", {}, window=W, max_wait=3)
    client = store._redis
    ttl_ms = await client.pttl(store.window_prefix + "k")
    assert 0 < ttl_ms <= 63_000
    clock.advance(W)
    [closed] = await store.claim_due()
    assert await client.hlen(store.claims_key) == 1
    await store.ack(closed)
    for key in (store.due_key, store.inflight_key, store.claims_key):
        assert not await client.exists(key)
    assert 0 < await client.pttl(store.window_prefix + "k") <= 63_000


async def test_redis_unreachable_is_bus_unavailable() -> None:
    store = RedisDebounce(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(BusUnavailable):
        await store.offer("k", "e", {}, window=W)
    with pytest.raises(BusUnavailable):
        await store.claim_due()
    await store.close()


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.choice(
        ["int", "big", "float", "str", "bool", "none", "list", "dict"] if depth < 2 else ["int", "str"]
    )
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == "dict":
        return {rng.choice("abc"): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return {
        "int": lambda: rng.randint(-5, 5),
        "big": lambda: rng.randint(10**15, 10**20),
        "float": lambda: rng.choice([0.1, 1e-7, 2.5e300, -0.0]),
        "str": lambda: rng.choice(["a", "é", "/", '"q"', "\u2603", ""]),
        "bool": lambda: rng.random() < 0.5,
        "none": lambda: None,
    }[kind]()


async def test_the_lua_merge_agrees_with_the_python_merge(make: Make) -> None:
    rng = random.Random(7)
    clock = frozen_clock(T0)
    options: dict[str, Any] = {"max_list_items": 6, "max_ids": 4}
    redis_store, memory_store = (
        make(clock, **options),
        MemoryDebounce(DebounceOptions(clock=clock, **options)),
    )
    for round_ in range(20):
        for i in range(rng.randint(1, 8)):
            data = {rng.choice("pqrst"): _random_value(rng) for _ in range(rng.randint(0, 4))}
            event_id = f"r{round_}-{i}"
            assert await redis_store.offer("k", event_id, data, window=W) == await memory_store.offer(
                "k", event_id, data, window=W
            )
            clock.advance(0.1)
        clock.advance(W)
        from_redis, from_memory = await redis_store.claim_due(), await memory_store.claim_due()
        assert [(c.key, c.merged) for c in from_redis] == [(c.key, c.merged) for c in from_memory]
        for closed in from_redis:
            await redis_store.ack(closed)
        for closed in from_memory:
            await memory_store.ack(closed)
