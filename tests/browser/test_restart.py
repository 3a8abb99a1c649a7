"""A page survives a server restart on Redis: it reconnects by itself and shows exactly the events published
while the server was down, in order; when they are no longer in the history it is told to refetch (`onReset`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support import ServerProcess
from tidings import Hub, Settings

from .harness import open_harness, wait_events
from .test_streams import publish

pytestmark = pytest.mark.asyncio(loop_scope="module")
HISTORY = 5  # events kept per channel: an outage with more than this for one user cannot be replayed


async def test_the_page_reconnects_after_a_restart_and_misses_nothing(
    context: Any,
    redis_settings: dict[str, str],
    make_settings: Callable[..., Settings],
    token: Callable[..., str],
    tmp_path: Path,
) -> None:
    env = {
        "TIDINGS_BUS_URL": redis_settings["bus_url"],
        "TIDINGS_REDIS_PREFIX": redis_settings["redis_prefix"],
        "TIDINGS_HISTORY_MAX_EVENTS": str(HISTORY),
        "TIDINGS_RECONNECT_DELAY_MS": "300",  # the `retry:` floor of the client's backoff
        "TIDINGS_SHUTDOWN_GRACE_SECONDS": "2",
        "TIDINGS_LOG_LEVEL": "warning",
    }
    # while the server is down, another process publishes (a backend on the same Redis)
    # (history limits are applied by whoever publishes: it keeps the same HISTORY)
    elsewhere = Hub(make_settings(**redis_settings, history_max_events=HISTORY, worker_in_process=False))
    server = ServerProcess(env, tmp_path / "server").start()
    try:
        async with elsewhere.lifespan():

            async def outage(count: int) -> list[str]:
                nonlocal server
                server.stop()
                await page.wait_for_function("window.handle.state === 'waiting'")
                ids = [
                    await elsewhere.publish("test.event", {"n": i}, to={"users": ["alice"]})
                    for i in range(count)
                ]
                server = ServerProcess(env, tmp_path / "server", port=server.port).start()
                return ids

            await context.expose_function("aliceToken", lambda: token("alice"))
            page = await open_harness(context, server.url)
            await page.evaluate(
                f"start({{url: '{server.url}/v1/events', tokenFrom: 'aliceToken',"
                " backoff: {initialMs: 200, maxMs: 1000}})"
            )
            await page.wait_for_function("window.handle.state === 'open'")
            expected = await publish(server.url, "alice", 2)
            await wait_events(page, 2)

            expected += await outage(HISTORY - 1)  # within the history: replayed on reconnect
            events = await wait_events(page, len(expected), timeout_ms=90_000)
            assert [e["id"] for e in events] == expected, "exactly the missed events, in order, once"
            assert [e["data"]["n"] for e in events[2:]] == list(range(HISTORY - 1))
            assert await page.evaluate("window.resets") == []

            await outage(HISTORY + 3)  # more than the history holds: the page must refetch instead
            await page.wait_for_function("window.resets.length === 1", timeout=90_000)
            assert (await page.evaluate("window.resets"))[0]["reason"] == "history_unavailable"
            live = await publish(server.url, "alice", 1)  # and it is live again
            events = await wait_events(page, len(expected) + 1, timeout_ms=30_000)
            assert [e["id"] for e in events] == expected + live  # the lost ones come from the refetch
    finally:
        server.stop()
