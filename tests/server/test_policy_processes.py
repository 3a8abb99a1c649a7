"""Delivery policy across real `tidings serve` processes on one Redis: presence seen from another process and
its expiry after a SIGKILL (within the ttl); a debounce window whose process was killed is closed by another;
a burst published through four processes is one leading and one trailing delivery — on streams, and on
pushes sent by four in-process workers to the APNs sandbox (devices and the delivery log in PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from delivery.sandbox_rig import KEY_ID, TEAM_ID, TOPIC, apns_token, new_key_pem
from fixtures.db import _pg_url
from support import PUBLISH_KEY, ServerProcess, open_stream
from tidings import db
from tidings.delivery.log import DeliveryLog
from tidings.registry.store import DeviceStore
from tidings.registry.validation import DeviceIn
from tidings.sandbox.apns import ApnsSandbox

AUTH = {"Authorization": f"Bearer {PUBLISH_KEY}"}
TTL = 3.0


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(env: dict[str, str]) -> ServerProcess:
        server = ServerProcess(env, tmp_path / f"data{len(started)}")
        started.append(server)  # stopped at the end even if it never answered
        # a generous start: interpreters importing on 2 shared cores under load take their time
        return server.start(timeout=60)

    yield start
    for server in started:
        server.stop()


def policy_env(redis_settings: dict[str, str], **windows: float) -> dict[str, str]:
    return {
        "TIDINGS_BUS_URL": redis_settings["bus_url"],
        "TIDINGS_REDIS_PREFIX": redis_settings["redis_prefix"],
        "TIDINGS_PRESENCE_TTL_SECONDS": str(TTL),
        "TIDINGS_PRESENCE_HEARTBEAT_SECONDS": "1",
        "TIDINGS_DEBOUNCE": json.dumps({"tasks.changed": windows}),
        "TIDINGS_DEBOUNCE_POLL_SECONDS": "0.05",
    }


async def publish(client: httpx.AsyncClient, base: str, n: int, *, push: bool = False) -> str:
    event: dict[str, Any] = {"type": "tasks.changed", "to": {"users": ["ann"]}, "data": {"ids": [f"t{n}"]}}
    if push:
        event["push"] = {"mode": "silent", "data": {"ids": [f"t{n}"]}}
    r = await client.post(f"{base}/v1/publish", headers=AUTH, json=event)
    assert r.status_code == 202, r.text
    return str(r.json()["ids"][0])


async def presence(client: httpx.AsyncClient, base: str, user: str) -> dict[str, Any]:
    r = await client.get(f"{base}/v1/presence", params={"user_id": user}, headers=AUTH)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.mark.redis
@pytest.mark.timeout(300)  # two interpreters start on a shared 2-core host
async def test_presence_spans_processes_expires_after_sigkill_and_a_dead_processes_window_closes(
    servers: Callable[..., ServerProcess], redis_settings: dict[str, str], token: Callable[..., str]
) -> None:
    env = policy_env(redis_settings, stream=2)
    a, b = servers(env), servers(env)
    async with httpx.AsyncClient(timeout=10) as client, open_stream(b.url, token=token("ann")) as ann:
        async with open_stream(a.url, token=token("bob")):
            async with asyncio.timeout(10):
                while not (seen := await presence(client, b.url, "bob"))["online"]:
                    await asyncio.sleep(0.05)
            assert seen["connections"] == 1  # bob's stream is on A; B answers for the cluster
            ids = [await publish(client, a.url, n) for n in range(3)]  # A opens ann's window
            leading = (await ann.next_event()).json()
            assert leading["debounced"]["ids"] == ids[:1]
            a.signal(signal.SIGKILL)
            killed = time.monotonic()
            assert await asyncio.to_thread(a.wait, 10) == -signal.SIGKILL
            trailing = (await ann.next_event(timeout=10)).json()  # B closed the window A opened
            assert trailing["debounced"] == {"count": 2, "ids": ids[1:]}
            assert trailing["data"]["ids"] == ["t1", "t2"]
            async with asyncio.timeout(TTL + 10):
                while (gone := await presence(client, b.url, "bob"))["online"]:
                    await asyncio.sleep(0.05)
            assert time.monotonic() - killed < TTL + 2, "a killed process counted past its ttl"
            assert gone["last_seen"] is not None


@pytest.fixture
async def sandbox() -> AsyncIterator[tuple[ApnsSandbox, bytes]]:
    pem, key = new_key_pem()
    box = ApnsSandbox(key_id=KEY_ID, team_id=TEAM_ID, public_key=key.public_key(), topics=frozenset({TOPIC}))
    await box.start()
    try:
        yield box, pem
    finally:
        await box.stop()


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.timeout(300)  # four interpreters start on a shared 2-core host
async def test_a_burst_through_four_processes_is_one_leading_and_one_trailing_delivery(
    servers: Callable[..., ServerProcess],
    redis_settings: dict[str, str],
    token: Callable[..., str],
    postgres_server: Any,
    sandbox: tuple[ApnsSandbox, bytes],
    tmp_path: Path,
) -> None:
    postgres_server.require()
    url = _pg_url(postgres_server.create(postgres_server.migrated_template()))
    box, pem = sandbox
    engine = db.create_engine(url)
    try:
        await DeviceStore(engine).register(
            "ann", DeviceIn(provider="apns", platform="ios", token=apns_token(), environment="sandbox")
        )
        key = tmp_path / "AuthKey.p8"
        key.write_bytes(pem)
        env = {
            **policy_env(redis_settings, stream=3, push=3),
            "TIDINGS_DATABASE_URL": url,
            "TIDINGS_WORKER_IN_PROCESS": "true",
            "TIDINGS_APNS_KEY_PATH": str(key),
            "TIDINGS_APNS_KEY_ID": KEY_ID,
            "TIDINGS_APNS_TEAM_ID": TEAM_ID,
            "TIDINGS_APNS_TOPIC": TOPIC,
            "TIDINGS_APNS_URL": box.url,
        }
        procs = [await asyncio.to_thread(servers, env) for _ in range(4)]  # one at a time: 2 shared cores
        async with (
            httpx.AsyncClient(timeout=10) as client,
            open_stream(procs[0].url, token=token("ann")) as ann,
        ):
            ids = await asyncio.gather(*(publish(client, procs[n % 4].url, n, push=True) for n in range(12)))
            first, second = (await ann.next_event()).json(), (await ann.next_event(timeout=10)).json()
            assert first["debounced"]["count"] == 1 and second["debounced"]["count"] == 11
            assert sorted(first["debounced"]["ids"] + second["debounced"]["ids"]) == sorted(ids)
            assert sorted(first["data"]["ids"] + second["data"]["ids"]) == sorted(f"t{n}" for n in range(12))
            log = DeliveryLog(engine)

            async def story() -> list[Any]:
                return [row for i in ids for row in await log.query(event_id=i)]

            try:
                async with asyncio.timeout(20):  # every event's push story is told: sent, or merged into one
                    # leading sent (1), 11 held (11), at close 10 merged + 1 carrying (11), trailing sent (1)
                    while len(await story()) < 24:
                        await asyncio.sleep(0.1)
            except TimeoutError:
                rows = [(r.event_id, r.outcome, r.reason) for r in await story()]
                pytest.fail(
                    f"{len(rows)} rows: {rows}; pushes {box.state.records}; {procs[0].logs()[-3000:]}"
                )
            pushes = [orjson.loads(r["body"]) for r in box.state.records]
            assert len(pushes) == 2, pushes
            lead, trail = sorted(pushes, key=lambda p: p.get("coalesced", 1))
            assert trail["coalesced"] == 11 and sorted(lead["ids"] + trail["ids"]) == sorted(
                f"t{n}" for n in range(12)
            )
    finally:
        await engine.dispose()
