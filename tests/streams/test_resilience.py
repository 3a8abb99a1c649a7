"""Streams in the real world: slow readers, idle and expired streams, revocation, metrics and logs."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest

from support import PLAIN_PROTOCOL, PUBLISH_KEY, TIDINGS_PROTOCOL, InProcessServer, app_of, open_stream
from tidings import Hub


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample in exposition text (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"{name}{{{wanted}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def metrics_text(base: str) -> str:
    async with httpx.AsyncClient(base_url=base) as client:
        return (await client.get("/metrics")).text


@pytest.mark.parametrize("protocol", [TIDINGS_PROTOCOL, PLAIN_PROTOCOL], ids=["socket-writes", "asgi-send"])
async def test_a_slow_reader_is_cut_off_while_fast_readers_get_everything(
    make_settings: Callable[..., Any], token: Callable[..., str], protocol: str
) -> None:
    limit = 256 * 1024
    hub = Hub(
        make_settings(stream_buffer_bytes=limit, stream_buffer_events=10_000, max_data_bytes=65536),
    )
    async with InProcessServer(app_of(hub), http=protocol) as server:
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window, and it never reads
        slow.connect(("127.0.0.1", server.port))
        slow.sendall(f"GET /v1/events?token={token('slow')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        before = sample(await metrics_text(server.url), "sse_disconnects_total", reason="slow")
        try:
            async with open_stream(server.url, token=token("fast")) as fast:
                async with asyncio.timeout(5):
                    while len(hub.streams) < 2:
                        await asyncio.sleep(0.01)
                event = {"type": "load.tick", "data": {"blob": "x" * 30_000}, "to": {"broadcast": True}}
                ids: list[str] = []
                reader = asyncio.create_task(fast.events(400, timeout=10))  # the fast client reads as it goes
                for _ in range(
                    400
                ):  # 12 MB: more than any kernel buffers, at a pace the fast reader keeps up with
                    ids += await hub.publish_many([event])
                    worst = max((c.buffered_bytes for c in hub.streams.connections()), default=0)
                    assert worst <= limit  # bounded, whatever the slow reader does
                    await asyncio.sleep(0.002)
                assert [f.id for f in await reader] == ids
            after = sample(await metrics_text(server.url), "sse_disconnects_total", reason="slow")
            assert after == before + 1
        finally:
            slow.close()


async def test_a_stream_closes_when_its_token_expires(
    server: InProcessServer, token: Callable[..., str]
) -> None:
    short = token("alice", ttl=7)  # streams refuse a token with less than 5 s left (stream_min_token_seconds)
    expires_at = jwt.decode(short, options={"verify_signature": False})["exp"]
    async with open_stream(server.url, token=short) as stream:
        with pytest.raises((StopAsyncIteration, httpx.RemoteProtocolError)):
            while True:
                await stream.next_frame(timeout=15)
        assert (
            expires_at <= time.time() < expires_at + 2.5
        )  # at expiry (the sweep runs each second), not before


async def test_an_idle_stream_is_closed_but_keepalives_flow_until_then(
    make_settings: Callable[..., Any], token: Callable[..., str]
) -> None:
    hub = Hub(make_settings(stream_idle_timeout=1.5, keepalive_seconds=0.5))
    async with (
        InProcessServer(app_of(hub)) as server,
        open_stream(server.url, token=token()) as stream,
    ):
        frames = []
        with pytest.raises((StopAsyncIteration, httpx.RemoteProtocolError)):
            while True:
                frames.append(await stream.next_frame(timeout=5))
        assert any(f.comments == ["keepalive"] for f in frames)
        assert sample(await metrics_text(server.url), "sse_disconnects_total", reason="idle") >= 1


async def test_revocation_closes_the_users_streams_and_refuses_the_session(
    server: InProcessServer, token: Callable[..., str]
) -> None:
    revoked, other = token("alice", jti="session-1"), token("alice", jti="session-2")
    async with (
        open_stream(server.url, token=revoked) as first,
        open_stream(server.url, token=other) as second,
        httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {PUBLISH_KEY}"}) as client,
    ):
        response = await client.post("/v1/sessions/revoke", json={"user_id": "alice", "jti": "session-1"})
        assert response.status_code == 200
        with pytest.raises((StopAsyncIteration, httpx.RemoteProtocolError)):
            await first.next_frame(timeout=1)
        event_id = await server.hub.publish("a.b", {}, to={"users": ["alice"]})  # type: ignore[attr-defined]
        assert (await second.next_event()).id == event_id  # the other session lives on
        refused = await client.get("/v1/events", params={"token": revoked}, headers={"Authorization": ""})
        assert refused.status_code == 401 and refused.json()["error"] == "token_revoked"
        bad = await client.post("/v1/sessions/revoke", json={"user": "alice"})
        assert bad.status_code == 422 and bad.json()["field"] == "user_id"


@pytest.mark.redis
async def test_revocation_reaches_streams_on_every_process_within_a_second(
    make_settings: Callable[..., Any], redis_settings: dict[str, str], token: Callable[..., str]
) -> None:
    hub_a = Hub(make_settings(**redis_settings))
    hub_b = Hub(make_settings(**redis_settings))
    async with (
        InProcessServer(app_of(hub_a)) as a,
        InProcessServer(app_of(hub_b)),
    ):
        async with open_stream(a.url, token=token("alice")) as stream:
            started = time.monotonic()
            await hub_b.revoke("alice")
            with pytest.raises((StopAsyncIteration, httpx.RemoteProtocolError)):
                await stream.next_frame(timeout=1)
            assert time.monotonic() - started < 1


async def test_metrics_move_with_streams_and_events(
    server: InProcessServer, token: Callable[..., str]
) -> None:
    base = await metrics_text(server.url)
    async with open_stream(server.url, "/v1/admin/events", token=token("root", "admin")) as stream:
        await server.hub.publish("order.created", {}, to={"roles": ["admin"]})  # type: ignore[attr-defined]
        await stream.next_event()
        during = await metrics_text(server.url)
    assert (
        sample(during, "sse_connections_active", role="admin")
        == sample(base, "sse_connections_active", role="admin") + 1
    )
    assert (
        sample(during, "events_published_total", event_type="order.created")
        == sample(base, "events_published_total", event_type="order.created") + 1
    )
    assert sample(during, "admin_events_emitted_total", event_type="order.created") >= 1
    assert (
        sample(during, "events_delivered_total", transport="sse")
        >= sample(base, "events_delivered_total", transport="sse") + 1
    )
    assert sample(during, "event_delivery_latency_seconds_count") >= 1
    for name in ("sse_connection_duration_seconds", "push_sent_total", "push_queue_depth", "devices_active"):
        assert f"# TYPE {name}" in during


async def test_stream_logs_name_who_and_why_but_never_the_token(
    server: InProcessServer, token: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    secret_token = token("alice")
    with caplog.at_level(logging.INFO, logger="tidings"):
        async with open_stream(server.url, token=secret_token):
            pass
        async with asyncio.timeout(5):
            while not any(r.getMessage() == "stream close" for r in caplog.records):
                await asyncio.sleep(0.01)
    opened = next(r for r in caplog.records if r.getMessage() == "stream open")
    closed = next(r for r in caplog.records if r.getMessage() == "stream close")
    assert opened.user_id == "alice" and opened.ip == "127.0.0.1" and opened.conn == closed.conn  # type: ignore[attr-defined]
    assert closed.reason == "client" and closed.duration >= 0  # type: ignore[attr-defined]
    assert all(
        secret_token not in r.getMessage() and secret_token not in str(vars(r)) for r in caplog.records
    )


def test_json_log_lines_carry_context() -> None:
    import orjson

    from tidings.logs import JsonFormatter

    record = logging.LogRecord("tidings.streams", logging.INFO, __file__, 1, "stream open", None, None)
    record.user_id = "alice"
    line = orjson.loads(JsonFormatter().format(record))
    assert line["msg"] == "stream open" and line["user_id"] == "alice" and line["level"] == "info"


@pytest.mark.redis
async def test_readyz_needs_a_live_worker_when_workers_are_separate_processes(
    make_settings: Callable[..., Any], redis_settings: dict[str, str]
) -> None:
    hub = Hub(make_settings(**redis_settings))
    async with (
        InProcessServer(app_of(hub)) as server,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        idle = await client.get("/readyz")
        assert idle.status_code == 503 and idle.json()["checks"] == {
            "bus": True,
            "database": True,
            "worker": False,
        }
        await hub.queue.beat("worker-1")  # what a `tidings worker` process does every few seconds
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["worker"] is True
