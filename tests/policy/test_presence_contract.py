"""One presence contract for both backends (memory and Redis): counts, last seen, batches, retention."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from support import ManualClock, frozen_clock
from tidings.policy import Presence, PresenceOptions, create_presence


@pytest.fixture
def clock() -> ManualClock:
    return frozen_clock()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def presence(request: pytest.FixtureRequest, clock: ManualClock) -> AsyncIterator[Presence]:
    options = PresenceOptions(ttl=10, heartbeat=3, sync_delay=0.01, last_seen_retention=3600, clock=clock)
    if request.param == "memory":
        instance = create_presence("memory://", options=options)
    else:
        settings: dict[str, str] = request.getfixturevalue("redis_settings")
        client = Redis.from_url(settings["bus_url"])
        instance = create_presence(
            settings["bus_url"], prefix=settings["redis_prefix"], options=options, client=client
        )
    await instance.start()
    yield instance
    await instance.stop()
    if request.param == "redis":
        await client.aclose()


async def test_a_user_never_seen_is_offline(presence: Presence) -> None:
    status = await presence.status("nobody")
    assert (status.online, status.connections, status.last_seen) == (False, 0, None)


async def test_online_while_any_stream_is_open_and_last_seen_when_the_last_closes(
    presence: Presence, clock: ManualClock
) -> None:
    presence.connected("alice")
    presence.connected("alice")
    clock.advance(5)
    status = await presence.status("alice")
    assert (status.online, status.connections, status.last_seen) == (True, 2, clock.now)

    presence.disconnected("alice")
    assert (await presence.status("alice")).connections == 1
    clock.advance(5)
    closed_at = clock.now
    presence.disconnected("alice")
    clock.advance(5)
    status = await presence.status("alice")
    assert (status.online, status.connections) == (False, 0)
    assert status.last_seen == pytest.approx(closed_at, abs=0.001)

    await presence.flush()  # the same answer once written (Redis: read back from the server)
    status = await presence.status("alice")
    assert (status.online, status.connections) == (False, 0)
    assert status.last_seen == pytest.approx(closed_at, abs=0.001)


async def test_a_close_without_an_open_stream_is_ignored(presence: Presence) -> None:
    presence.disconnected("ghost")
    presence.connected("bob")
    presence.disconnected("bob")
    presence.disconnected("bob")
    presence.connected("bob")
    await presence.flush()
    status = await presence.status("bob")
    assert (status.online, status.connections) == (True, 1)


async def test_online_many_answers_every_user_asked_about(presence: Presence) -> None:
    presence.connected("a")
    presence.connected("c")
    presence.connected("c")
    presence.disconnected("c")
    await presence.flush()
    assert await presence.online_many(["a", "b", "c", "a"]) == {"a": True, "b": False, "c": True}
    assert await presence.online_many([]) == {}


async def test_last_seen_is_forgotten_after_the_retention(presence: Presence, clock: ManualClock) -> None:
    presence.connected("carol")
    presence.disconnected("carol")
    await presence.flush()
    clock.advance(3599)
    assert (await presence.status("carol")).last_seen is not None
    clock.advance(2)
    await presence.flush()  # Redis: the heartbeat trims the last-seen set
    assert (await presence.status("carol")).last_seen is None


async def test_reconnecting_after_a_close_is_online_again(presence: Presence, clock: ManualClock) -> None:
    presence.connected("dave")
    presence.disconnected("dave")
    await presence.flush()
    presence.connected("dave")
    status = await presence.status("dave")
    assert (status.online, status.connections, status.last_seen) == (True, 1, clock.now)
    assert presence.local_connections("dave") == 1
