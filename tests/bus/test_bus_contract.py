"""One contract for every bus (DESIGN §3): ordering, ids, history and gaps, revocations — memory and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from tidings.bus import Bus, create_bus
from tidings.wire import parse_id


def tail(kind: str, channels: str, body: str = '{"data":{}}') -> bytes:
    return f"{kind}\n{channels}\n{body}".encode()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def make_bus(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Awaitable[Bus]]]:
    """Start a bus of the parametrised kind: `await make_bus(received.append, max_events=5)`."""
    made: list[Bus] = []

    async def make(deliver: Callable[[bytes], None], *, max_events: int) -> Bus:
        if request.param == "memory":
            instance = create_bus("memory://", max_events=max_events, max_age=600)
        else:
            settings: dict[str, str] = request.getfixturevalue("redis_settings")
            url, prefix = settings["bus_url"], settings["redis_prefix"]
            instance = create_bus(url, prefix=prefix, max_events=max_events, max_age=600)
        await instance.start(deliver)
        made.append(instance)
        return instance

    yield make
    for instance in made:
        await instance.stop()


@pytest.fixture
async def bus(make_bus: Callable[..., Awaitable[Bus]]) -> tuple[Bus, list[bytes]]:
    received: list[bytes] = []
    return await make_bus(received.append, max_events=5), received


async def wait_for(received: list[Any], count: int) -> None:
    async with asyncio.timeout(5):
        while len(received) < count:
            await asyncio.sleep(0.005)


async def test_publish_assigns_increasing_ids_and_delivers_in_order(bus: tuple[Bus, list[bytes]]) -> None:
    instance, received = bus
    ids = await instance.publish([tail(f"a.e{i}", "u:alice") for i in range(5)])
    ids += await instance.publish([tail("a.last", "*")])
    assert [parse_id(i) for i in ids] == sorted(parse_id(i) for i in ids) and len(set(ids)) == 6
    await wait_for(received, 6)
    assert [m.split(b"\n")[0].decode() for m in received] == ids
    assert received[0].split(b"\n", 3)[1:3] == [b"a.e0", b"u:alice"]


async def test_history_replays_only_later_events_of_the_asked_channels(bus: tuple[Bus, list[bytes]]) -> None:
    instance, _ = bus
    first, *_ = await instance.publish([tail("a.one", "u:alice")])
    ids = await instance.publish(
        [tail("a.two", "u:bob"), tail("a.three", "u:alice r:admin"), tail("a.four", "r:admin")]
    )
    replay = await instance.history(first, ["u:alice", "r:admin"])
    assert replay is not None
    assert [m.split(b"\n")[0].decode() for m in replay] == [
        ids[1],
        ids[2],
    ]  # a.three once, though on two channels


async def test_history_from_the_newest_id_is_empty(bus: tuple[Bus, list[bytes]]) -> None:
    instance, _ = bus
    [newest] = await instance.publish([tail("a.one", "u:alice")])
    assert await instance.history(newest, ["u:alice"]) == []


async def test_history_reports_a_gap_when_trimmed(bus: tuple[Bus, list[bytes]]) -> None:
    instance, _ = bus
    [start] = await instance.publish([tail("a.start", "u:alice")])
    await instance.publish(
        [tail(f"a.e{i}", "u:alice") for i in range(6)]
    )  # max_events=5: one after `start` trimmed
    assert await instance.history(start, ["u:alice"]) is None


async def test_history_is_complete_when_only_older_events_were_trimmed(bus: tuple[Bus, list[bytes]]) -> None:
    instance, _ = bus
    ids = await instance.publish([tail(f"a.e{i}", "u:alice") for i in range(7)])
    replay = await instance.history(ids[2], ["u:alice"])  # ids[0..1] trimmed, ids[2] was seen by the client
    assert replay is not None and [m.split(b"\n")[0].decode() for m in replay] == ids[3:]


async def test_with_no_history_kept_a_resume_is_never_told_nothing_happened(
    make_bus: Callable[..., Awaitable[Bus]],
) -> None:
    """`TIDINGS_HISTORY_MAX_EVENTS=0` keeps nothing: every resume must reset, not replay an empty list."""
    received: list[bytes] = []
    instance = await make_bus(received.append, max_events=0)
    [first] = await instance.publish([tail("a.one", "u:alice")])
    await instance.publish([tail("a.two", "u:alice")])
    await wait_for(received, 2)
    assert await instance.history(first, ["u:alice"]) is None


async def test_history_never_returns_what_the_subscription_has_not_delivered(
    bus: tuple[Bus, list[bytes]],
) -> None:
    """A replay meets the live stream without a seam: each replayed event was already handed to `deliver`
    (the hub holds live events for a resuming stream and drops the ones the replay carried)."""
    instance, received = bus
    [first] = await instance.publish([tail("a.one", "u:alice")])
    ids = await instance.publish([tail(f"a.e{i}", "u:alice") for i in range(3)])
    replay = await instance.history(first, ["u:alice"])
    delivered = {m.split(b"\n")[0].decode() for m in received}
    assert replay is not None and [m.split(b"\n")[0].decode() for m in replay] == ids
    assert all(event_id in delivered for event_id in ids)


@pytest.mark.parametrize("bad", ["garbage", "", "12", "-1-2", "99999999999999-0"])
async def test_unknown_or_future_ids_have_no_history(bus: tuple[Bus, list[bytes]], bad: str) -> None:
    instance, _ = bus
    await instance.publish([tail("a.one", "u:alice")])
    assert await instance.history(bad, ["u:alice"]) is None


async def test_revoked_session_ids_are_remembered_until_their_time(bus: tuple[Bus, list[bytes]]) -> None:
    instance, _ = bus
    import time

    await instance.mark_revoked("s1", time.time() + 60)
    await instance.mark_revoked("s2", time.time() - 1)
    assert await instance.is_revoked("s1") and not await instance.is_revoked("s2")
    assert not await instance.is_revoked("never")
    assert await instance.healthy()


@pytest.mark.redis
async def test_redis_subscriber_catches_up_after_its_connection_is_killed(
    redis_settings: dict[str, str],
) -> None:
    """A subscription dropped by Redis (CLIENT KILL) loses nothing published meanwhile."""
    url, prefix = redis_settings["bus_url"], redis_settings["redis_prefix"]
    subscriber = create_bus(url, prefix=prefix)
    publisher = create_bus(url, prefix=prefix)
    received: list[bytes] = []
    await subscriber.start(received.append)
    await publisher.start(lambda _: None)
    admin = aioredis.from_url(url)
    try:
        ids = await publisher.publish([tail("a.before", "u:a")])
        await wait_for(received, 1)
        await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        ids += await publisher.publish([tail(f"a.during{i}", "u:a") for i in range(3)])
        ids += await publisher.publish([tail("a.after", "u:a")])
        ids += await publisher.publish([tail("a.sentinel", "u:a")])
        await wait_for(received, 6)  # delivery is in id order: a duplicate would come before the sentinel
        assert [m.split(b"\n")[0].decode() for m in received] == ids
    finally:
        await admin.aclose()
        await subscriber.stop()
        await publisher.stop()
