"""Topic reads and device topic subscriptions are closed by default: the token's topics claim grants them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from support import InProcessServer, app_of, open_stream
from tidings import Hub, Settings

DEVICE = {"provider": "fcm", "platform": "android", "token": "fcm-token-1"}


async def serve(settings: Settings) -> AsyncIterator[tuple[InProcessServer, httpx.AsyncClient, Hub]]:
    hub = Hub(settings)
    async with (
        InProcessServer(app_of(hub)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
    ):
        yield server, http, hub


@pytest.fixture
async def closed(make_settings: Callable[..., Settings]) -> AsyncIterator[Any]:
    async for served in serve(make_settings()):
        yield served


async def read(http: httpx.AsyncClient, token: str, topics: str) -> tuple[int, Any]:
    async with http.stream("GET", "/v1/events", params={"token": token, "topics": topics}) as response:
        if response.status_code == 200:
            return 200, None
        await response.aread()
        return response.status_code, response.json()


async def subscribe(http: httpx.AsyncClient, token: str, topics: list[str]) -> tuple[int, Any]:
    response = await http.post(
        "/v1/devices", json={**DEVICE, "topics": topics}, headers={"Authorization": f"Bearer {token}"}
    )
    return response.status_code, response.json()


async def test_without_a_grant_no_topic_can_be_read_or_subscribed_to(
    closed: Any, token: Callable[..., str]
) -> None:
    """Regression: any authenticated user could read any topic, and subscribe a device to its pushes."""
    _, http, _ = closed
    status, body = await read(http, token("alice"), "payroll")
    assert (status, body["error"], body["field"]) == (403, "forbidden", "topics")
    status, body = await subscribe(http, token("alice"), ["payroll"])
    assert (status, body["error"], body["field"]) == (403, "forbidden", "topics")
    assert (await read(http, token("alice"), ""))[0] == 200  # no topics asked: the stream itself is open


async def test_the_topics_claim_grants_exact_names_and_prefix_patterns(
    closed: Any, token: Callable[..., str]
) -> None:
    server, http, hub = closed
    reader = token("alice", topics=["news", "orders.*"])
    for granted in ("news", "orders.42", "orders.42.lines", "news,orders.7"):
        assert (await read(http, reader, granted))[0] == 200, granted
    for refused in ("orders", "ordersx.1", "news.today", "sports"):  # `orders.*` is what is under `orders.`
        assert (await read(http, reader, refused))[0] == 403, refused
    assert (await subscribe(http, reader, ["orders.7"]))[0] == 201
    assert (await subscribe(http, reader, ["orders.7", "sports"]))[0] == 403
    async with open_stream(server.url, token=reader, params={"topics": "orders.9"}) as stream:
        await hub.publish("order.created", {"n": 1}, to={"topics": ["orders.8"]})
        event_id = await hub.publish("order.created", {"n": 2}, to={"topics": ["orders.9"]})
        assert (await stream.next_event()).id == event_id


async def test_a_star_grants_every_topic_and_the_claim_may_be_a_space_separated_string(
    closed: Any, token: Callable[..., str]
) -> None:
    _, http, _ = closed
    assert (await read(http, token("alice", topics=["*"]), "anything.at.all"))[0] == 200
    assert (await read(http, token("alice", topics="news sports.*"), "sports.golf,news"))[0] == 200
    assert (await read(http, token("alice", topics=["*.news", "n*"]), "a.news,news"))[
        0
    ] == 403  # not patterns


async def test_the_claim_name_is_configurable_and_may_be_nested(
    make_settings: Callable[..., Settings], token: Callable[..., str]
) -> None:
    async for _, http, _ in serve(make_settings(topics_claim="tidings.topics")):
        assert (await read(http, token("alice", tidings={"topics": ["news"]}), "news"))[0] == 200
        assert (await read(http, token("alice", topics=["news"]), "news"))[0] == 403


async def test_topics_open_lets_every_authenticated_user_read_and_subscribe_to_any_topic(
    make_settings: Callable[..., Settings], token: Callable[..., str]
) -> None:
    async for _, http, _ in serve(make_settings(topics_open=True)):
        assert (await read(http, token("alice"), "payroll"))[0] == 200
        assert (await subscribe(http, token("alice"), ["payroll"]))[0] == 201
