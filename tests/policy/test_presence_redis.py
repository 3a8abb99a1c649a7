"""Presence across processes on the real Redis: two clients stand for two processes (each with its own clock),
and real child processes for the SIGKILL case."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError

from support import ManualClock, free_port, frozen_clock
from tidings.errors import BusUnavailable
from tidings.policy.presence import PresenceOptions
from tidings.policy.presence_redis import RedisPresence

from .policy_rig import CountingRedis, kill, read_line, spawn, wait_until

pytestmark = pytest.mark.redis

TTL = 10.0
Make = Callable[..., RedisPresence]


@pytest.fixture
async def make(redis_settings: dict[str, str]) -> AsyncIterator[Make]:
    """Build presences on one prefix, each its own 'process' (client, id, clock); all stopped at the end."""
    made: list[tuple[RedisPresence, Redis]] = []

    def build(clock: ManualClock | None = None, counting: bool = False, **opts: float) -> RedisPresence:
        cls = CountingRedis if counting else Redis
        client = cls.from_url(settings["bus_url"])
        values: dict[str, float] = {"ttl": TTL, "heartbeat": 3, "sync_delay": 0.01, **opts}
        options = PresenceOptions(clock=clock or frozen_clock(), **values)  # type: ignore[arg-type]
        presence = RedisPresence(prefix=settings["redis_prefix"], options=options, client=client)
        made.append((presence, client))
        return presence

    settings = redis_settings
    yield build
    for presence, client in made:
        await presence.stop()
        await client.aclose()


async def test_a_stream_on_one_process_counts_on_another(make: Make) -> None:
    a, b = make(), make()
    a.connected("u")
    a.connected("u")
    await a.flush()
    b.connected("u")
    status = await b.status("u")
    assert (status.online, status.connections) == (True, 3)
    assert await b.online_many(["u", "v"]) == {"u": True, "v": False}
    assert (await a.status("u")).connections == 2  # b's stream is not written yet
    await b.flush()
    assert (await a.status("u")).connections == 3


async def test_any_user_id_round_trips(make: Make) -> None:
    a, b = make(), make()
    odd = ["ünï😀", "line\nbreak", 'quo"te', "", "x" * 256, "1e3", "-0"]
    for user in odd:
        a.connected(user)
    await a.flush()
    assert await b.online_many([*odd, "0"]) == {**dict.fromkeys(odd, True), "0": False}
    assert [(await b.status(user)).connections for user in odd] == [1] * len(odd)


async def test_changes_reach_other_processes_without_a_flush(make: Make) -> None:
    a, b = make(sync_delay=0.05), make()
    await a.start()
    a.connected("u")

    async def online() -> bool:
        return (await b.online_many(["u"]))["u"]

    await wait_until(online, 5)
    a.disconnected("u")

    async def offline() -> bool:
        return not await online()

    await wait_until(offline, 5)


class FlakyRedis(Redis):
    """Pipelines fail while `down` is set, as a Redis restart would make them, and wait for `gate` if set."""

    down = False
    gate: asyncio.Event | None = None

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        async def maybe(raise_on_error: bool = True) -> Any:
            if self.gate is not None:
                await self.gate.wait()
            if self.down:
                raise ConnectionError("Redis went away")
            return await execute(raise_on_error)

        pipe.execute = maybe  # type: ignore[method-assign]
        return pipe


async def test_changes_made_while_redis_is_down_are_written_when_it_is_back(
    redis_settings: dict[str, str], make: Make
) -> None:
    clock = frozen_clock()
    client = FlakyRedis.from_url(redis_settings["bus_url"])
    options = PresenceOptions(ttl=TTL, heartbeat=3, sync_delay=0, clock=clock)
    a = RedisPresence(prefix=redis_settings["redis_prefix"], options=options, client=client)
    b = make(clock)
    a.connected("leaves")
    await a.flush()
    client.down = True
    a.connected("arrives")
    clock.advance(1)
    a.disconnected("leaves")
    left_at = clock.now
    with pytest.raises(BusUnavailable):
        await a._sync()
    client.down = False
    a.connected("arrives-later")
    await a.flush()
    assert await b.online_many(["leaves", "arrives", "arrives-later"]) == {
        "leaves": False,
        "arrives": True,
        "arrives-later": True,
    }
    await a.stop()
    assert (await b.status("leaves")).last_seen == pytest.approx(left_at, abs=0.001)
    await client.aclose()


async def test_last_seen_is_known_while_its_write_is_on_the_way(redis_settings: dict[str, str]) -> None:
    clock = frozen_clock()
    client = FlakyRedis.from_url(redis_settings["bus_url"])
    options = PresenceOptions(ttl=TTL, heartbeat=3, sync_delay=0, clock=clock)
    a = RedisPresence(prefix=redis_settings["redis_prefix"], options=options, client=client)
    await a.flush()
    a.connected("u")
    a.disconnected("u")
    closed_at = clock.now
    client.gate = asyncio.Event()
    writing = asyncio.create_task(a._sync())  # takes the pending close and waits at the gate
    async with asyncio.timeout(5):
        while a._dirty:  # the write took the pending close
            await asyncio.sleep(0)
    status = await a.status("u")  # neither pending locally nor in Redis yet, but known
    client.gate.set()
    await writing
    assert status.last_seen == pytest.approx(closed_at, abs=0.001)
    assert (await a.status("u")).last_seen == pytest.approx(closed_at, abs=0.001)
    await a.stop()
    await client.aclose()


async def test_a_process_that_stops_heartbeating_stops_counting_after_the_ttl(make: Make) -> None:
    clock_a, clock_b = frozen_clock(), frozen_clock()
    a, b = make(clock_a), make(clock_b)
    a.connected("u")
    await a.flush()  # a's last heartbeat, at clock_a.now; it never beats again
    last_beat = clock_a.now
    clock_b.now = last_beat + TTL - 0.01
    assert (await b.status("u")).online
    clock_b.now = last_beat + TTL
    status = await b.status("u")
    assert (status.online, status.connections) == (False, 0)
    assert status.last_seen == pytest.approx(last_beat, abs=0.001)  # a's last beat, before and after reaping
    await b.flush()  # b's heartbeat reaps a: its users move into last-seen, its hash is gone
    assert (await b.status("u")).last_seen == pytest.approx(last_beat, abs=0.001)
    assert not await b._redis.exists(a.own_key)
    assert await b._redis.zscore(a.procs_key, a.process_id) is None


async def test_a_reaped_process_rewrites_its_streams_when_it_beats_again(make: Make) -> None:
    clock_a, clock_b = frozen_clock(), frozen_clock()
    a, b = make(clock_a), make(clock_b)
    for user in ("u", "v", "v"):
        a.connected(user)
    await a.flush()
    clock_a.advance(TTL + 1)  # a stalled for longer than the ttl...
    clock_b.advance(TTL + 1)
    await b.flush()  # ...and b reaped it
    assert await b.online_many(["u", "v"]) == {"u": False, "v": False}
    await a.flush()  # a's next beat learns it was counted dead and rewrites everything
    assert await b.online_many(["u", "v"]) == {"u": True, "v": True}
    assert (await b.status("v")).connections == 2


async def test_a_dead_process_is_reaped_a_bounded_batch_per_heartbeat(make: Make) -> None:
    clock_a, clock_b = frozen_clock(), frozen_clock()
    a, b = make(clock_a), make(clock_b, reap_batch=10)
    users = [f"user-{i}" for i in range(25)]
    for user in users:
        a.connected(user)
    await a.flush()
    clock_b.advance(TTL + 1)
    lengths = []
    for _ in range(3):
        await b.flush()
        lengths.append(await b._redis.hlen(a.own_key))
    assert lengths == [15, 5, 0]
    assert await b._redis.zscore(a.procs_key, a.process_id) is None
    seen = await b._redis.zmscore(b.seen_key, users)
    assert seen == [round(clock_a.now * 1000)] * 25


async def test_a_clean_stop_withdraws_the_process_at_once(make: Make) -> None:
    clock = frozen_clock()
    a, b = make(clock), make(clock)
    a.connected("u")
    await a.flush()
    clock.advance(1)
    await a.stop()
    status = await b.status("u")
    assert not status.online
    assert status.last_seen == pytest.approx(clock.now, abs=0.001)


async def test_an_audience_of_1000_is_answered_in_one_round_trip(make: Make) -> None:
    a, b, asker = make(), make(), make(counting=True)
    users = [f"user-{i}" for i in range(1000)]
    for user in users[:300]:
        a.connected(user)
    for user in users[200:400]:
        b.connected(user)
    await a.flush()
    await b.flush()
    await asker.start()  # loads the scripts
    client = asker._redis
    assert isinstance(client, CountingRedis)
    client.calls = 0
    answer = await asker.online_many(users)
    assert client.calls == 1
    assert answer == {user: i < 400 for i, user in enumerate(users)}


async def test_a_sigkilled_process_stops_counting_within_its_ttl(
    make: Make, redis_settings: dict[str, str]
) -> None:
    ttl = 1.0
    observer = make(frozen_clock(), ttl=ttl, heartbeat=0.25)
    code = """
import asyncio, sys
from tidings.policy.presence import PresenceOptions
from tidings.policy.presence_redis import RedisPresence

async def main():
    presence = RedisPresence(sys.argv[1], prefix=sys.argv[2],
                             options=PresenceOptions(ttl=1.0, heartbeat=0.25, sync_delay=0.01))
    for i in range(50):
        presence.connected(f"user-{i}")
    await presence.start()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""
    child = await spawn(code, redis_settings["bus_url"], redis_settings["redis_prefix"])
    try:
        assert await read_line(child) == "ready"
        observer._clock = time.time  # from here on, real time: the child's heartbeats are real
        assert (await observer.status("user-7")).online
        await kill(child)
        killed_at = time.time()
        assert (await observer.status("user-7")).online  # nobody cleaned up: only the ttl can end it

        async def gone() -> bool:
            return not any((await observer.online_many([f"user-{i}" for i in range(50)])).values())

        await wait_until(gone, ttl + 5)
        expired_after = time.time() - killed_at
    finally:
        await kill(child)
    print(f"\npresence: SIGKILLed process stopped counting {expired_after:.2f}s after the kill (ttl {ttl}s)")
    assert expired_after <= ttl + 0.5
    last_seen = (await observer.status("user-7")).last_seen
    assert last_seen is not None and killed_at - ttl <= last_seen <= killed_at


async def test_redis_unreachable_is_bus_unavailable() -> None:
    presence = RedisPresence(f"redis://127.0.0.1:{free_port()}/0")
    presence.connected("u")  # the router's side never touches Redis
    with pytest.raises(BusUnavailable):
        await presence.status("u")
    with pytest.raises(BusUnavailable):
        await presence.online_many(["u"])
    with pytest.raises(BusUnavailable):
        await presence.start()
    await presence.stop()
