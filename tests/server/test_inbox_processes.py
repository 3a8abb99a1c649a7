"""The inbox across two real `tidings serve` processes on one Redis and one PostgreSQL: a user's two streams, one on
each process, get `inbox.changed` with the same counts when an item arrives through either process, and when
the item is read through the other one — within a second; a role item reaches a member's stream on the other
process; counts read over HTTP on either process agree."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtures.db import _pg_url
from support import PUBLISH_KEY, ServerProcess, SSEStream, open_stream

PUBLISHER = {"Authorization": f"Bearer {PUBLISH_KEY}"}


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], ServerProcess]]:
    started: list[ServerProcess] = []

    def start(env: dict[str, str]) -> ServerProcess:
        server = ServerProcess(env, tmp_path / f"data{len(started)}")
        started.append(server)
        return server.start(timeout=60)  # interpreters importing on 2 shared cores take their time

    yield start
    for server in started:
        server.stop()


async def change(stream: SSEStream) -> dict[str, Any]:
    while True:
        frame = await stream.next_event(timeout=10)
        if frame.event == "inbox.changed":
            body: dict[str, Any] = frame.json()
            return body


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.timeout(300)
async def test_counts_reach_a_users_streams_on_two_processes_within_a_second(
    servers: Callable[[dict[str, str]], ServerProcess],
    redis_settings: dict[str, str],
    postgres_server: Any,
    token: Callable[..., str],
) -> None:
    postgres_server.require()
    env = {
        "TIDINGS_BUS_URL": redis_settings["bus_url"],
        "TIDINGS_REDIS_PREFIX": redis_settings["redis_prefix"],
        "TIDINGS_DATABASE_URL": _pg_url(postgres_server.create(postgres_server.migrated_template())),
        "TIDINGS_WORKER_IN_PROCESS": "false",
    }
    a, b = servers(env), servers(env)
    ann = token("ann", "staff")
    me = {"Authorization": f"Bearer {ann}"}
    async with (
        httpx.AsyncClient(timeout=10) as client,
        open_stream(a.url, token=ann) as on_a,
        open_stream(b.url, token=ann) as on_b,
        open_stream(b.url, token=token("bob", "staff")) as bob_on_b,
    ):
        event = {"type": "notes.posted", "to": {"users": ["ann"]}, "inbox": {"title": "hello"}}
        r = await client.post(f"{a.url}/v1/publish", headers=PUBLISHER, json=event)
        assert r.status_code == 202, r.text
        one = {"unseen": 1, "unread": 1, "by_category": {}}
        assert await change(on_a) == one and await change(on_b) == one

        memo = {
            "type": "notes.posted",
            "to": {"roles": ["staff"]},
            "inbox": {"title": "memo", "category": "team"},
        }
        r = await client.post(f"{b.url}/v1/publish", headers=PUBLISHER, json=memo)
        assert r.status_code == 202, r.text
        two = {"unseen": 2, "unread": 2, "by_category": {"team": 1}}
        assert await change(on_a) == two and await change(on_b) == two
        assert await change(bob_on_b) == {"unseen": 1, "unread": 1, "by_category": {"team": 1}}

        page = (await client.get(f"{a.url}/v1/inbox", headers=me)).json()
        hello = next(item["id"] for item in page["items"] if item["title"] == "hello")
        marked = time.monotonic()
        r = await client.post(
            f"{b.url}/v1/inbox/read", headers=me, json={"ids": [hello]}
        )  # read on one device
        assert r.status_code == 200 and r.json()["counts"]["unread"] == 1, r.text
        left = {"unseen": 1, "unread": 1, "by_category": {"team": 1}}
        assert (
            await change(on_a) == left and await change(on_b) == left
        )  # the dot clears in the other tab too
        assert time.monotonic() - marked < 1.0
        for server in (a, b):  # and either process answers the same counts
            r = await client.get(f"{server.url}/v1/inbox/counts", headers=me)
            assert r.json() == left, (server.url, r.text)
        await bob_on_b.assert_silent(0.2)  # ann's read state is hers
