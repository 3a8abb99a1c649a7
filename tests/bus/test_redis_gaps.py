"""The Redis bus after a lost subscription and with partial history: exact catch-up, or an explicit gap — never
silence. Each test runs its own redis-server; a subscription is cut the way production cuts it: the process
stops reading (here: the test's event loop is held while another thread publishes) and Redis drops the
subscriber at its pub/sub output-buffer limit."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis_process import RedisServer

import tidings.bus.redis as redis_bus
from support import InProcessServer, app_of, open_stream, require
from tidings import Hub
from tidings.bus.redis import RedisBus
from tidings.wire import GAP, encode_tail, message_id, parse_id

PREFIX = "gaps"


def tail(n: int, channels: Sequence[str] = ("u:alice",), pad: int = 1000) -> bytes:
    return encode_tail("tick.n", list(channels), {"type": "tick.n", "data": {"n": n, "pad": "x" * pad}})


def publish_while_stopped(url: str, tails: list[bytes], **options: Any) -> list[str]:
    """Publish from another thread (another process, in effect) while this thread's event loop stands still —
    as a stopped or paused process would: its subscription is not read, and Redis cuts it."""
    ids: list[str] = []

    async def run() -> None:
        bus = RedisBus(url, prefix=PREFIX, **options)
        try:
            ids.extend(await bus.publish(tails))
        finally:
            await bus.stop()

    thread = threading.Thread(target=lambda: asyncio.run(run()))
    thread.start()
    thread.join(30)  # blocking on purpose: the subscriber in this loop must not read meanwhile
    assert ids, "the publisher thread failed"
    return ids


async def wait_for(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.01)


def kinds(received: list[bytes]) -> list[str]:
    return [m.split(b"\n", 2)[1].decode() for m in received]


@pytest.fixture
def small_buffer(redis_server: Callable[..., RedisServer]) -> RedisServer:
    return redis_server(**{"client-output-buffer-limit": "pubsub 64kb 0 0"})


async def started(url: str, received: list[bytes], **options: Any) -> RedisBus:
    bus = RedisBus(url, prefix=PREFIX, **options)
    await bus.start(received.append)
    return bus


async def test_a_cut_subscription_catches_up_every_event_in_order_once(small_buffer: RedisServer) -> None:
    received: list[bytes] = []
    bus = await started(small_buffer.url, received)
    try:
        [first] = await bus.publish([tail(0)])
        await wait_for(lambda: len(received) == 1)
        ids = publish_while_stopped(small_buffer.url, [tail(n) for n in range(1, 301)])  # 300 KB > 64 KB
        [sentinel] = await bus.publish([tail(301)])
        await wait_for(lambda: message_id(received[-1]) == sentinel)
        assert [message_id(m) for m in received] == [first, *ids, sentinel]
    finally:
        await bus.stop()


async def test_a_subscription_cut_past_the_trimmed_history_delivers_a_gap_then_goes_on_live(
    small_buffer: RedisServer,
) -> None:
    """The publisher keeps only ~100 events (the stream trims whole nodes): the subscriber, cut 300 events
    behind, cannot catch up — it must say so, in order, before any later event."""
    received: list[bytes] = []
    bus = await started(small_buffer.url, received)
    try:
        await bus.publish([tail(0)])
        await wait_for(lambda: len(received) == 1)
        publish_while_stopped(small_buffer.url, [tail(n) for n in range(1, 301)], log_length=1)
        await wait_for(lambda: GAP in kinds(received))
        [sentinel] = await bus.publish([tail(301)])
        await wait_for(lambda: message_id(received[-1]) == sentinel)
        after_gap = received[kinds(received).index(GAP) + 1 :]
        assert [message_id(m) for m in after_gap] == [sentinel]  # nothing stale after the gap
        keys = [parse_id(message_id(m)) for m in received if not m.split(b"\n", 2)[1].startswith(b"tidings.")]
        assert keys == sorted(set(keys))  # what was delivered before it came in order, once
    finally:
        await bus.stop()


async def test_a_redis_that_lost_its_data_is_a_gap_for_its_subscribers(own_redis: RedisServer) -> None:
    received: list[bytes] = []
    bus = await started(own_redis.url, received)
    admin = aioredis.from_url(own_redis.url)
    try:
        await bus.publish([tail(0)])
        await wait_for(lambda: len(received) == 1)
        await admin.flushall()  # as a restart without persistence, or a failover to an empty replica, would
        await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        await wait_for(lambda: GAP in kinds(received))
        [later] = await bus.publish([tail(1)])
        await wait_for(lambda: message_id(received[-1]) == later)
    finally:
        await admin.aclose()
        await bus.stop()


async def test_a_reference_to_a_message_no_longer_stored_reads_as_a_gap(own_redis: RedisServer) -> None:
    """alice's history still lists every id, but the events stream (kept to ~50 entries here) lost the
    messages: a replay from before them is impossible, not empty."""
    received: list[bytes] = []
    bus = await started(own_redis.url, received, log_length=50)
    try:
        ids = await bus.publish([tail(n, pad=10) for n in range(300)])
        assert await bus.history(ids[10], ["u:alice"]) is None
        recent = await bus.history(ids[-3], ["u:alice"])
        assert recent is not None and [message_id(m) for m in recent] == ids[-2:]
    finally:
        await bus.stop()


async def test_an_audience_indexed_over_several_calls_is_replayed_to_every_member(
    own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_bus, "CALL_CHANNELS", 8)  # 3 channels with the event, 8 a call after
    users = [f"u:user{n}" for n in range(20)]
    received: list[bytes] = []
    bus = await started(own_redis.url, received)
    try:
        [before] = await bus.publish([tail(0, ["u:user7", "u:other"])])
        [event, after] = await bus.publish([tail(1, users), tail(2, ["u:user7"])])
        for user in ("u:user0", "u:user9", "u:user19", "u:user7"):
            replay = await bus.history(before, [user])
            expected = [event, after] if user == "u:user7" else [event]
            assert replay is not None and [message_id(m) for m in replay] == expected, user
        assert await bus.history(before, ["u:other"]) == []
    finally:
        await bus.stop()


async def test_an_event_whose_indexing_was_cut_short_is_still_replayed(
    own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The publisher dies (here: Redis refuses) after the event went out but before its whole audience was
    indexed: resumes find it among the pending events, and only the members of its audience get it."""
    monkeypatch.setattr(redis_bus, "CALL_CHANNELS", 8)  # 3 channels with the event, 8 a call after
    received: list[bytes] = []
    bus = await started(own_redis.url, received)

    async def refuse(**_: Any) -> None:
        raise ConnectionError("redis went away")

    try:
        [before] = await bus.publish([tail(0, ["u:user7"])])
        monkeypatch.setattr(bus, "_index", refuse)
        [event] = await bus.publish([tail(1, [f"u:user{n}" for n in range(20)])])
        replay = await bus.history(before, ["u:user7"])
        assert replay is not None and [message_id(m) for m in replay] == [event]
        assert await bus.history(before, ["u:nobody"]) == []
    finally:
        await bus.stop()


async def test_a_resume_never_replays_what_its_own_subscription_has_not_delivered(
    small_buffer: RedisServer,
) -> None:
    """The seam: a replay that ran ahead of this process's subscription would be delivered again, out of
    order, when the subscription catches up. Whatever history returns must already have been delivered."""
    received: list[bytes] = []
    bus = await started(small_buffer.url, received)
    try:
        [first] = await bus.publish([tail(0)])
        await wait_for(lambda: len(received) == 1)
        ids = publish_while_stopped(small_buffer.url, [tail(n) for n in range(1, 301)])
        replay = await bus.history(first, ["u:alice"])  # races the subscription's recovery
        delivered = {message_id(m) for m in received}
        assert replay is not None and all(message_id(m) in delivered for m in replay)
        assert [message_id(m) for m in replay] == ids[: len(replay)]
    finally:
        await bus.stop()


async def test_a_process_that_started_without_redis_resets_its_streams_when_it_subscribes(
    tmp_path: Any,
) -> None:
    """Streams may open while the first subscription is still being retried (the process goes on after 5 s):
    events published meanwhile never reached them, so the first subscription owes them a reset."""
    require(shutil.which("redis-server") is not None, "the redis-server binary")
    redis = RedisServer(tmp_path)  # its port is chosen, nothing listens yet
    received: list[bytes] = []
    bus = RedisBus(redis.url, prefix=PREFIX)
    await bus.start(received.append)  # gives up waiting after 5 s, keeps retrying
    try:
        assert not bus.connected.is_set()
        redis.start()
        await wait_for(lambda: GAP in kinds(received))
        [later] = await bus.publish([tail(1)])
        await wait_for(lambda: message_id(received[-1]) == later)
    finally:
        await bus.stop()
        redis.kill()


async def test_after_a_gap_only_the_streams_whose_channels_lost_events_reset(
    small_buffer: RedisServer, make_settings: Callable[..., Any], token: Callable[..., str]
) -> None:
    """The events stream was trimmed past this process's watermark, but only alice's channel had events in the
    trimmed stretch: alice gets `events_lost`; bob gets his missed event from his channel's history, exactly; carol,
    who missed nothing, sees nothing at all — instead of a reset for every stream of the process."""
    hub = Hub(make_settings(bus_url=small_buffer.url, redis_prefix=PREFIX))
    async with (
        InProcessServer(app_of(hub)) as server,
        open_stream(server.url, token=token("alice")) as alice,
        open_stream(server.url, token=token("bob")) as bob,
        open_stream(server.url, token=token("carol")) as carol,
    ):
        [before] = await hub.bus.publish([tail(-1, ["u:bob"])])
        assert (await bob.next_event()).id == before  # the process's watermark
        lost = [tail(n, ["u:alice"]) for n in range(300)]  # 300 KB: past the 64 KB buffer, then trimmed
        *_, missed = publish_while_stopped(small_buffer.url, [*lost, tail(300, ["u:bob"])], log_length=1)
        await wait_for(lambda: hub.bus.connected.is_set() and hub.bus._subscription.gaps == 1)  # type: ignore[attr-defined]
        [sentinel] = await hub.bus.publish([tail(301, ["u:alice", "u:bob", "u:carol"])])

        reset = await alice.next_event(timeout=10)
        assert reset.event == "reset" and reset.json()["reason"] == "events_lost"
        assert (await alice.next_event(timeout=10)).id == sentinel
        assert [(await bob.next_event(timeout=10)).id for _ in range(2)] == [missed, sentinel]
        assert (await carol.next_event(timeout=10)).id == sentinel
