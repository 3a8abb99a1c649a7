"""Stream debounce before the bus, per (audience, scope): a burst in one window is one leading and one
trailing delivery with the merged data, listing the published ids it stands for; nothing is lost at a window
edge; `publish` returns every event's own id; events without a window are published exactly as before."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from streams_rig import marker, stream_of

from support import ManualClock
from tidings import Hub

T0 = 1_800_000_000.0
WINDOWS = {"tasks.changed": {"stream": 1}}


@pytest.fixture
async def hub(make_settings: Callable[..., Any]) -> AsyncIterator[Hub]:
    hub = Hub(
        make_settings(stream_idle_timeout=0, debounce_poll_seconds=0.02), clock=ManualClock(frozen_at=T0)
    )
    async with hub.lifespan():
        yield hub


async def changed(hub: Hub, ids: list[str], today: bool, **fields: Any) -> str:
    hints = {"updatedTaskIds": ids, "todayCountChanged": today, "count": len(ids)}
    return await hub.publish("tasks.changed", hints, to={"users": ["ann"]}, **fields)


async def test_a_burst_is_one_leading_and_one_trailing_delivery(make_settings: Callable[..., Any]) -> None:
    clock = ManualClock(frozen_at=T0)
    hub = Hub(make_settings(stream_idle_timeout=0, debounce_poll_seconds=0.02), clock=clock, debounce=WINDOWS)
    async with hub.lifespan():
        ann = await stream_of(hub, "ann")
        ids = [
            await changed(hub, ["t1"], False),
            await changed(hub, ["t2", "t3"], False),
            await changed(hub, ["t3", "t4"], True),
            await changed(hub, ["t5"], False),
        ]
        assert len(set(ids)) == 4  # every event has its own id, delivered at once or merged
        leading = await ann.next()
        assert leading.id not in ids and leading.event == "tasks.changed"
        body = leading.json()
        assert body["data"]["updatedTaskIds"] == ["t1"] and body["debounced"] == {"count": 1, "ids": [ids[0]]}
        clock.advance(1)
        trailing = (await ann.next()).json()
        assert trailing["data"] == {
            "updatedTaskIds": ["t2", "t3", "t4", "t5"],
            "todayCountChanged": True,
            "count": 1,
        }
        assert trailing["debounced"] == {"count": 3, "ids": ids[1:]}
        await marker(hub, "ann")
        assert [f.event for f in await ann.until("test.marker")] == ["test.marker"]  # exactly two


async def test_windows_are_per_audience_and_scope(make_settings: Callable[..., Any]) -> None:
    hub = Hub(make_settings(stream_idle_timeout=0), clock=ManualClock(frozen_at=T0), debounce=WINDOWS)
    async with hub.lifespan():
        ann = await stream_of(hub, "ann")
        first = await changed(hub, ["a"], False, scope="list:1")
        second = await changed(hub, ["b"], False, scope="list:2")  # another scope: its own leading edge
        got = [(await ann.next()).json()["debounced"]["ids"] for _ in range(2)]
        assert got == [[first], [second]]


async def test_nothing_is_lost_at_a_window_edge(make_settings: Callable[..., Any]) -> None:
    clock = ManualClock(frozen_at=T0)
    settings = make_settings(
        stream_idle_timeout=0, debounce_poll_seconds=3600
    )  # no flusher round after start
    hub = Hub(settings, clock=clock, debounce=WINDOWS)
    async with hub.lifespan():
        ann = await stream_of(hub, "ann")
        await changed(hub, ["t1"], False)
        held = await changed(hub, ["t2"], False)
        await ann.next()
        clock.advance(1.5)  # the window is due, and no flusher has closed it
        edge = await changed(hub, ["t3"], True)
        merged = (await ann.next()).json()
        assert merged["debounced"] == {"count": 2, "ids": [held, edge]}
        assert merged["data"]["updatedTaskIds"] == ["t2", "t3"]


async def test_per_event_debounce_and_critical_bypass(hub: Hub) -> None:
    ann = await stream_of(hub, "ann")
    window = {"stream": 1}
    lead = await changed(hub, ["t1"], False, debounce=window)
    assert (await ann.next()).json()["debounced"]["ids"] == [lead]
    await changed(hub, ["t2"], False, debounce=window)  # held
    critical = await changed(hub, ["t9"], False, debounce=window, critical=True)
    frame = await ann.next()
    assert frame.id == critical and "debounced" not in frame.json()  # never held, never merged
    off = await changed(hub, ["t3"], False, debounce={"stream": 0})  # 0: off for this event
    assert (await ann.next()).id == off


async def test_events_without_a_window_are_unchanged(hub: Hub) -> None:
    ann = await stream_of(hub, "ann")
    event_id = await hub.publish("tasks.changed", {"n": 1}, to={"users": ["ann"]})
    frame = await ann.next()
    assert frame.id == event_id and set(frame.json()) == {"id", "type", "data", "occurred_at"}
