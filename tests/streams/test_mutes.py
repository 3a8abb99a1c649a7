"""Streams respect mutes: a muted scope (or the type, or `stream: false`) gets no stream event unless it is
critical; a change reaches open streams at once (on Redis: from another process); a `muted_until` ends by
the injected clock; a resumed stream's replay is filtered too; and events that arrive while a new stream's
preferences load are held, then handed over filtered, in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from streams_rig import marker, stream_of, wait_muted

from support import ManualClock
from tidings import Hub
from tidings.auth import Principal
from tidings.policy.preferences import Preferences, parse_scope
from tidings.streams.connection import BufferLimits, Connection
from tidings.streams.mutes import StreamPolicy
from tidings.streams.router import Router
from tidings.wire import Envelope, encode_tail, with_id

T0 = 1_800_000_000.0


@pytest.fixture
async def hub(make_settings: Callable[..., Any]) -> AsyncIterator[Hub]:
    clock = ManualClock(frozen_at=T0)
    hub = Hub(make_settings(stream_idle_timeout=0), clock=clock)
    async with hub.lifespan():
        yield hub


async def message(hub: Hub, user: str, conversation: str, **fields: Any) -> str:
    return await hub.publish(
        "message.new",
        {"c": conversation},
        to={"users": [user]},
        scope=f"conversation:{conversation}",
        **fields,
    )


async def test_a_muted_scope_gets_no_stream_event_unless_critical(hub: Hub) -> None:
    await hub.preferences.put_scope("ann", "conversation:42", parse_scope({"muted": True}))
    await hub.preferences.put_scope("ann", "conversation:9", parse_scope({"stream": False}))
    ann = await stream_of(hub, "ann")
    await message(hub, "ann", "42")
    await message(hub, "ann", "9")
    other = await message(hub, "ann", "7")
    critical = await message(hub, "ann", "42", critical=True)
    await marker(hub, "ann")
    frames = await ann.until("test.marker")
    assert [f.id for f in frames[:-1]] == [other, critical]
    assert frames[0].json()["scope"] == "conversation:7" and frames[1].json()["critical"] is True


async def test_muting_the_type_mutes_it_in_every_scope(hub: Hub) -> None:
    await hub.preferences.put_scope("ann", "message.new", parse_scope({"muted": True}))
    ann = await stream_of(hub, "ann")
    await message(hub, "ann", "42")
    await marker(hub, "ann")
    assert [f.event for f in await ann.until("test.marker")] == ["test.marker"]


async def test_a_change_reaches_an_open_stream_at_once(hub: Hub) -> None:
    ann = await stream_of(hub, "ann")
    first = await message(hub, "ann", "42")
    assert (await ann.next()).id == first
    await hub.preferences.patch("ann", {"scopes": {"conversation:42": {"muted": True}}})
    await wait_muted(hub, "ann", frozenset({"conversation:42"}))
    await message(hub, "ann", "42")
    await marker(hub, "ann")
    assert [f.event for f in await ann.until("test.marker")] == ["test.marker"]
    await hub.preferences.delete_scope("ann", "conversation:42")
    await wait_muted(hub, "ann", frozenset())
    again = await message(hub, "ann", "42")
    assert (await ann.next()).id == again


async def test_a_mute_until_ends_by_the_clock(hub: Hub) -> None:
    until = datetime.fromtimestamp(T0 + 60, UTC).isoformat()
    await hub.preferences.put_scope("ann", "conversation:42", parse_scope({"muted_until": until}))
    ann = await stream_of(hub, "ann")
    await message(hub, "ann", "42")
    await marker(hub, "ann")
    assert [f.event for f in await ann.until("test.marker")] == ["test.marker"]
    hub.clock.advance(61)  # type: ignore[attr-defined]
    await wait_muted(hub, "ann", frozenset())  # the policy's own round re-reads it, no reload needed
    after = await message(hub, "ann", "42")
    assert (await ann.next()).id == after


async def test_a_resumed_stream_replays_without_muted_events(hub: Hub) -> None:
    await hub.preferences.put_scope("ann", "conversation:42", parse_scope({"muted": True}))
    start = await marker(hub, "ann")
    await message(hub, "ann", "42")
    missed = await message(hub, "ann", "7")
    ann = await stream_of(hub, "ann", last_event_id=start)
    assert (await ann.next()).id == missed


@pytest.mark.redis
async def test_a_change_on_one_process_reaches_streams_on_another(
    make_settings: Callable[..., Any], redis_settings: dict[str, str]
) -> None:
    a, b = Hub(make_settings(**redis_settings)), Hub(make_settings(**redis_settings))  # one database
    async with a.lifespan(), b.lifespan():
        ann = await stream_of(a, "ann")
        await b.preferences.put_scope("ann", "conversation:42", parse_scope({"muted": True}))
        await wait_muted(a, "ann", frozenset({"conversation:42"}))
        await message(b, "ann", "42")
        kept = await message(b, "ann", "7")
        assert (await ann.next()).id == kept


async def test_events_arriving_while_preferences_load_are_held_then_filtered_in_order() -> None:
    gate = asyncio.Event()
    muted = Preferences.model_validate({"scopes": {"conversation:42": {"muted": True}}})

    async def load(users: list[str]) -> dict[str, Preferences]:
        await gate.wait()
        return {"ann": muted}

    router = Router(keepalive=30, idle_timeout=0, clock=lambda: T0)
    router.policy = policy = StreamPolicy(clock=lambda: T0, presence=None, load=load)
    await policy.start()
    conn = Connection(Principal("ann"), ["u:ann"], endpoint="events", limits=BufferLimits(), clock=lambda: T0)
    router.add(conn)
    counted: list[int] = []
    router.taps.append(lambda _envelope, recipients: counted.append(recipients))
    for n, scope in enumerate(["conversation:7", "conversation:42", "conversation:8"]):
        tail = encode_tail("message.new", ["u:ann"], {"n": n}, scope=scope)
        router.route(Envelope.parse(with_id(f"1-{n}", tail), lambda: T0))
    assert not conn.buffered_bytes  # held: the user's mutes are not known yet
    assert counted == [1, 1, 1]  # ...but a held stream is a recipient (the admin feed and metrics count it)
    gate.set()
    await policy.ready(conn)
    chunk = await conn.next_chunk()
    assert chunk is not None and chunk.count(b"event: message.new") == 2
    assert chunk.index(b"id: 1-0") < chunk.index(b"id: 1-2") and b"id: 1-1" not in chunk
    await policy.stop()
