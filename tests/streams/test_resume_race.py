"""Resume while publishes race the replay: exact order, no duplicate, no gap — in one process and across two."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from support import InProcessServer, app_of, open_stream
from tidings import Hub


async def publish_continuously(hub: Hub, published: list[str], stop: asyncio.Event) -> None:
    while not stop.is_set():
        published += await hub.publish_many([{"type": "tick.n", "data": {}, "to": {"users": ["alice"]}}] * 3)
        await asyncio.sleep(0.001)


async def resume_under_fire(publisher: Hub, first: str, second: str, token: str) -> None:
    published: list[str] = []
    stop = asyncio.Event()
    firing = asyncio.create_task(publish_continuously(publisher, published, stop))
    try:
        async with open_stream(first, token=token) as stream:
            before = [f.id for f in await stream.events(30)]
        # publishes go on while the client is away and while its replay is read
        async with open_stream(second, token=token, headers={"Last-Event-ID": before[-1]}) as stream:
            after = [f.id for f in await stream.events(200, timeout=10)]
    finally:
        stop.set()
        await firing
    received = before + after
    start = published.index(received[0])
    assert received == published[start : start + len(received)]  # the exact published order, nothing twice


async def test_resume_races_publishes_in_one_process(
    server: InProcessServer, token: Callable[..., str]
) -> None:
    await resume_under_fire(server.hub, server.url, server.url, token("alice"))  # type: ignore[attr-defined]


@pytest.mark.redis
async def test_resume_races_publishes_across_two_processes(
    make_settings: Callable[..., Any], redis_settings: dict[str, str], token: Callable[..., str]
) -> None:
    hub_a = Hub(make_settings(**redis_settings))
    hub_b = Hub(make_settings(**redis_settings))
    async with (
        InProcessServer(app_of(hub_a)) as a,
        InProcessServer(app_of(hub_b)) as b,
    ):
        await resume_under_fire(hub_a, a.url, b.url, token("alice"))
