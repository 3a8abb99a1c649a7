"""`GET /v1/events` and `/v1/admin/events` over a real socket: auth, routing, wire format, limits, cleanup."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest

from support import PUBLISH_KEY, SECRET, TIDINGS_PROTOCOL, InProcessServer, app_of, open_stream
from tidings import Hub
from tidings.auth import Principal


async def publish(hub: Hub, kind: str = "order.created", **to: Any) -> str:
    return await hub.publish(kind, {"order_id": 1}, to=to)


async def test_stream_headers_and_preamble(server: InProcessServer, token: Callable[..., str]) -> None:
    async with open_stream(server.url, token=token("alice")) as stream:
        headers = stream.response.headers
        assert headers["content-type"].startswith("text/event-stream")
        assert headers["cache-control"] == "no-cache" and headers["x-accel-buffering"] == "no"
        assert headers["x-reconnect-delay"] == "3000"


async def test_streams_are_written_to_the_socket_only_under_the_tidings_protocol(
    server: InProcessServer, token: Callable[..., str], request: pytest.FixtureRequest
) -> None:
    hub: Hub = server.hub  # type: ignore[attr-defined]
    async with open_stream(server.url, token=token("alice")) as stream:
        [conn] = list(hub.streams.connections())
        assert conn.attached == (request.node.callspec.params["server"] == TIDINGS_PROTOCOL)
        event_id = await publish(hub, users=["alice"])
        assert (await stream.next_event()).id == event_id


async def test_events_reach_the_user_its_roles_its_topics_and_broadcast(
    server: InProcessServer, token: Callable[..., str]
) -> None:
    hub: Hub = server.hub  # type: ignore[attr-defined]
    async with open_stream(
        server.url, token=token("alice", "ops", topics=["orders", "news"]), params={"topics": "orders,news"}
    ) as stream:
        expected = [
            await publish(hub, users=["alice"]),
            await publish(hub, roles=["ops"]),
            await publish(hub, topics=["news"]),
            await publish(hub, broadcast=True),
        ]
        await publish(hub, users=["bob"])
        await publish(hub, roles=["admin"])
        await publish(hub, topics=["sports"])
        frames = await stream.events(4)
        assert [f.id for f in frames] == expected
        assert frames[0].event == "order.created" and frames[0].json()["data"] == {"order_id": 1}
        await stream.assert_silent(0.3)


async def test_token_may_come_as_header_query_or_cookie(
    make_settings: Callable[..., Any], token: Callable[..., str]
) -> None:
    hub = Hub(make_settings(token_cookie="session"))
    async with InProcessServer(app_of(hub)) as server:
        for kwargs in (
            {"headers": {"Authorization": f"Bearer {token()}"}},
            {"token": token()},
            {"headers": {"Cookie": f"session={token()}"}},
        ):
            async with open_stream(server.url, **kwargs) as stream:
                event_id = await publish(hub, users=["alice"])
                assert (await stream.next_event()).id == event_id


def _bad_tokens() -> list[tuple[str, str | None]]:
    now = int(time.time())
    return [
        ("missing", None),
        ("garbage", "x.y.z"),
        ("expired", jwt.encode({"sub": "a", "exp": now - 100}, SECRET, algorithm="HS256")),
        (
            "wrong key",
            jwt.encode({"sub": "a", "exp": now + 100}, "another-secret-another-secret-x", algorithm="HS256"),
        ),
        ("alg none", jwt.encode({"sub": "a", "exp": now + 100}, None, algorithm="none")),
    ]


@pytest.mark.parametrize(("case", "bad"), _bad_tokens(), ids=[c for c, _ in _bad_tokens()])
async def test_bad_tokens_get_401_json_and_no_stream(
    server: InProcessServer, case: str, bad: str | None
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
        response = await client.get("/v1/events", params={"token": bad} if bad else {})
    assert response.status_code == 401 and response.headers["content-type"] == "application/json"
    assert response.json()["error"] in {"unauthorized", "invalid_token", "token_expired"}
    assert len(server.hub.streams) == 0  # type: ignore[attr-defined]


async def test_admin_stream_refuses_non_admins_with_403(
    server: InProcessServer, token: Callable[..., str]
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
        response = await client.get("/v1/admin/events", params={"token": token("alice", "ops")})
    assert response.status_code == 403 and response.json()["error"] == "forbidden"


async def test_admin_stream_carries_events_for_the_admin_role(
    server: InProcessServer, token: Callable[..., str]
) -> None:
    async with open_stream(server.url, "/v1/admin/events", token=token("root", "admin")) as stream:
        event_id = await publish(server.hub, roles=["admin"])  # type: ignore[attr-defined]
        assert (await stream.next_event()).id == event_id


async def test_a_second_admin_connection_replaces_the_first(
    server: InProcessServer, token: Callable[..., str]
) -> None:
    async with open_stream(server.url, "/v1/admin/events", token=token("root", "admin")) as first:
        async with open_stream(server.url, "/v1/admin/events", token=token("root", "admin")) as second:
            with pytest.raises((StopAsyncIteration, httpx.RemoteProtocolError)):
                await first.next_frame(timeout=5)  # the older stream ends
            event_id = await publish(server.hub, roles=["admin"])  # type: ignore[attr-defined]
            assert (await second.next_event()).id == event_id


async def test_topic_rule_decides_who_reads_a_topic(
    make_settings: Callable[..., Any], token: Callable[..., str]
) -> None:
    def only_staff(principal: Principal, topic: str) -> bool:
        return not topic.startswith("staff.") or principal.has_role("staff")

    hub = Hub(make_settings(), topic_access=only_staff)
    async with (
        InProcessServer(app_of(hub)) as server,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        refused = await client.get("/v1/events", params={"token": token("alice"), "topics": "staff.pay"})
        assert refused.status_code == 403 and refused.json()["field"] == "topics"
        async with open_stream(
            server.url, token=token("bob", "staff"), params={"topics": "staff.pay"}
        ) as stream:
            event_id = await publish(hub, topics=["staff.pay"])
            assert (await stream.next_event()).id == event_id


@pytest.mark.parametrize("topics", ["a b", ",".join(f"t{i}" for i in range(101)), "x" * 300])
async def test_bad_topic_lists_are_400(
    server: InProcessServer, token: Callable[..., str], topics: str
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.get("/v1/events", params={"token": token(), "topics": topics})
    assert response.status_code == 400 and response.json()["field"] == "topics"


async def test_a_disconnected_client_leaves_nothing_behind(
    server: InProcessServer, token: Callable[..., str]
) -> None:
    hub: Hub = server.hub  # type: ignore[attr-defined]

    def stream_tasks() -> list[asyncio.Task[object]]:
        names = {"_wait_for_disconnect", "RequestResponseCycle.run_asgi", "StreamEndpoint.__call__"}
        return [t for t in asyncio.all_tasks() if getattr(t.get_coro(), "__qualname__", "") in names]

    for _ in range(5):
        async with open_stream(server.url, token=token("alice", topics=["t"]), params={"topics": "t"}):
            assert len(hub.streams) == 1 and stream_tasks()
    async with asyncio.timeout(5):
        while len(hub.streams) or hub.streams._index or hub.streams._sessions or stream_tasks():
            await asyncio.sleep(0.01)


async def test_keepalive_comments_flow_while_idle(
    make_settings: Callable[..., Any], token: Callable[..., str]
) -> None:
    hub = Hub(make_settings(keepalive_seconds=0.2))
    async with (
        InProcessServer(app_of(hub)) as server,
        open_stream(server.url, token=token()) as stream,
    ):
        frame = await stream.next_frame(timeout=5)
        assert frame.comments == ["keepalive"] and frame.data == ""


async def test_resume_with_last_event_id_replays_what_was_missed(
    server: InProcessServer, token: Callable[..., str]
) -> None:
    hub: Hub = server.hub  # type: ignore[attr-defined]
    async with open_stream(server.url, token=token()) as stream:
        seen = (await stream.next_event(timeout=5)).id if await publish(hub, users=["alice"]) else None
    missed = [await publish(hub, users=["alice"]) for _ in range(3)]
    async with open_stream(server.url, token=token(), headers={"Last-Event-ID": seen or ""}) as stream:
        live = await publish(hub, users=["alice"])
        assert [f.id for f in await stream.events(4)] == [*missed, live]


async def test_an_unknown_last_event_id_gets_an_explicit_reset(
    server: InProcessServer, token: Callable[..., str]
) -> None:
    async with open_stream(server.url, token=token(), params={"last_event_id": "12-0"}) as stream:
        frame = await stream.next_event()
        assert frame.event == "reset" and frame.json()["reason"] == "history_unavailable"
        event_id = await publish(server.hub, users=["alice"])  # type: ignore[attr-defined]
        assert (await stream.next_event()).id == event_id


async def test_publish_and_stream_share_one_process_hub(
    server: InProcessServer, token: Callable[..., str]
) -> None:
    """The HTTP publish API reaches streams as hub.publish does."""
    async with (
        open_stream(server.url, token=token("alice")) as stream,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        response = await client.post(
            "/v1/publish",
            headers={"Authorization": f"Bearer {PUBLISH_KEY}"},
            json={"type": "task.changed", "data": {"task_id": 3}, "to": {"users": ["alice"]}},
        )
        frame = await stream.next_event()
        assert frame.id == response.json()["ids"][0] and frame.event == "task.changed"
