"""tidings.js in Chromium against a real hub: latency, token refresh, seven tabs on one connection, CORS."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from support import PUBLISH_KEY, SECRET, InProcessServer, ManualClock, app_of
from tidings import Hub, Settings
from tidings.auth import mint_token

from .harness import PageServer, events_of, goto_harness, open_harness, wait_events, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")
PUBLISHER = {"Authorization": f"Bearer {PUBLISH_KEY}"}


async def publish(base: str, user: str, n: int, kind: str = "test.event") -> list[str]:
    async with httpx.AsyncClient(base_url=base, headers=PUBLISHER) as http:
        body = [{"type": kind, "data": {"n": i}, "to": {"users": [user]}} for i in range(n)]
        answer = await http.post("/v1/publish", json=body)
        assert answer.status_code == 202, answer.text
        ids: list[str] = answer.json()["ids"]
        return ids


async def test_an_event_published_through_the_api_appears_within_500_ms(
    context: Any, make_settings: Callable[..., Settings], token: Callable[..., str]
) -> None:
    hub = Hub(make_settings())
    async with InProcessServer(app_of(hub)) as server:
        await context.expose_function("aliceToken", lambda: token("alice"))
        page = await open_harness(context, server.url)
        await page.evaluate(f"start({{url: '{server.url}/v1/events', tokenFrom: 'aliceToken'}})")
        await page.wait_for_function("window.states.includes('open')")
        for round_ in range(3):
            sent_at = time.time() * 1000
            (event_id,) = await publish(server.url, "alice", 1)
            events = await wait_events(page, round_ + 1)
            assert events[-1]["id"] == event_id
            assert events[-1]["at"] - sent_at < 500, (
                f"shown {events[-1]['at'] - sent_at:.0f} ms after publish"
            )


async def test_an_expired_token_is_replaced_through_get_token(
    context: Any, make_settings: Callable[..., Settings]
) -> None:
    """The hub's clock moves past the token's expiry: the stream is closed, the next connection gets a 401 for
    the old token, and the client asks getToken once for a new one and resumes without losing an event."""
    clock = ManualClock()
    hub = Hub(make_settings(jwt_leeway_seconds=0, keepalive_seconds=1), clock=clock)
    minted: list[float] = []

    def fresh() -> str:
        minted.append(clock())
        return mint_token(SECRET, "alice", [], ttl=60, now=clock())

    async with InProcessServer(app_of(hub)) as server:
        await context.expose_function("aliceToken", fresh)
        page = await open_harness(context, server.url)
        await page.evaluate(f"start({{url: '{server.url}/v1/events', tokenFrom: 'aliceToken'}})")
        await page.wait_for_function("window.states.includes('open')")
        first = await publish(server.url, "alice", 1)
        await wait_events(page, 1)
        clock.advance(120)  # the token is now expired for the hub (the browser's own clock has not moved)
        await wait_for(lambda: len(hub.streams) == 0, what="the expired stream to close")
        during = await publish(server.url, "alice", 2)  # published while the client has no stream
        events = await wait_events(page, 3)
        assert [e["id"] for e in events] == first + during
        assert await page.evaluate("window.tokenCalls") == 2 and len(minted) == 2
        assert await page.evaluate("window.handle.state") == "open"
        (conn,) = hub.streams.connections()
        assert conn.principal.expires_at is not None and conn.principal.expires_at > clock()


async def test_seven_tabs_share_one_stream_and_a_closed_leader_hands_over_without_loss(
    context: Any, make_settings: Callable[..., Settings], token: Callable[..., str]
) -> None:
    hub = Hub(make_settings())
    async with InProcessServer(app_of(hub)) as server:
        await context.expose_function("aliceToken", lambda: token("alice"))
        pages = [await open_harness(context, server.url) for _ in range(7)]
        for page in pages:
            await page.evaluate(
                f"start({{url: '{server.url}/v1/events', tokenFrom: 'aliceToken', shared: true}})"
            )
        for page in pages:
            await page.wait_for_function("window.handle.state === 'open'")
        await wait_for(lambda: len(hub.streams) == 1, what="one stream")
        before = await publish(server.url, "alice", 5)
        for page in pages:
            assert [e["id"] for e in await wait_events(page, 5)] == before
        assert len(hub.streams) == 1, "seven tabs, one connection"
        roles = [await page.evaluate("window.handle.role") for page in pages]
        assert roles.count("leader") == 1
        leader = pages[roles.index("leader")]
        old = next(iter(hub.streams.connections()))
        await leader.close()
        during = await publish(server.url, "alice", 5)  # while the next tab takes over
        after: list[str] = []
        await wait_for(lambda: len(hub.streams) == 1 and old.closed, what="the new leader's stream")
        after = await publish(server.url, "alice", 3)
        survivors = [page for page in pages if page is not leader]
        for page in survivors:
            ids = [e["id"] for e in await wait_events(page, 13)]
            assert ids == before + during + after, "every event once, in order"
        assert len(hub.streams) == 1
        assert sum([await p.evaluate("window.handle.role") == "leader" for p in survivors]) == 1


async def test_cross_origin_streaming_works_for_a_listed_origin_and_is_refused_for_another(
    context: Any, make_settings: Callable[..., Settings], token: Callable[..., str]
) -> None:
    async with PageServer() as pages:
        allowed = f"http://app.localhost:{pages.port}"
        hub = Hub(make_settings(cors_origins=allowed))
        async with InProcessServer(app_of(hub)) as server:
            await context.expose_function("aliceToken", lambda: token("alice"))
            fetch_page = await goto_harness(context, pages.url_for("app.localhost", server.url))
            ticket_page = await goto_harness(context, pages.url_for("app.localhost", server.url))
            refused_page = await goto_harness(context, pages.url_for("evil.localhost", server.url))
            url = f"{server.url}/v1/events"
            await fetch_page.evaluate(f"start({{url: '{url}', tokenFrom: 'aliceToken'}})")
            await ticket_page.evaluate(
                f"start({{url: '{url}', tokenFrom: 'aliceToken', transport: 'eventsource',"
                f" ticketUrl: '{server.url}/v1/stream-tickets', types: ['test.event']}})"
            )
            await refused_page.evaluate(
                f"start({{url: '{url}', tokenFrom: 'aliceToken', backoff: {{initialMs: 200, maxMs: 400}}}})"
            )
            for page in (fetch_page, ticket_page):
                await page.wait_for_function("window.handle.state === 'open'")
            await wait_for(lambda: len(hub.streams) == 2, what="the two allowed streams")
            ids = await publish(server.url, "alice", 2)
            for page in (fetch_page, ticket_page):
                assert [e["id"] for e in await wait_events(page, 2)] == ids
            # the refused origin keeps failing (the browser blocks every answer) and never opens
            await refused_page.wait_for_function("window.states.filter((s) => s === 'waiting').length >= 3")
            assert "open" not in await refused_page.evaluate("window.states")
            assert await events_of(refused_page) == []
            assert len(hub.streams) == 2
