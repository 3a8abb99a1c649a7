"""Real server processes: cross-process delivery on Redis, SIGTERM drain and resume, workers, the CLI."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from support import PUBLISH_KEY, ServerProcess, open_stream

AUTH = {"Authorization": f"Bearer {PUBLISH_KEY}"}


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(env: dict[str, str], *args: str) -> ServerProcess:
        server = ServerProcess(env, tmp_path / f"data{len(started)}", *args).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def redis_env(redis_settings: dict[str, str]) -> dict[str, str]:
    return {
        "TIDINGS_BUS_URL": redis_settings["bus_url"],
        "TIDINGS_REDIS_PREFIX": redis_settings["redis_prefix"],
    }


async def publish(base: str, users: list[str], kind: str = "order.created") -> str:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        response = await client.post(
            "/v1/publish", headers=AUTH, json={"type": kind, "data": {"n": 1}, "to": {"users": users}}
        )
    assert response.status_code == 202, response.text
    return str(response.json()["ids"][0])


@pytest.mark.redis
async def test_an_event_published_on_one_process_reaches_a_client_on_another(
    servers: Callable[..., ServerProcess], redis_settings: dict[str, str], token: Callable[..., str]
) -> None:
    env = redis_env(redis_settings)
    a, b = servers(env), servers(env)
    async with open_stream(a.url, token=token("alice")) as stream:
        event_id = await publish(b.url, ["alice"])
        assert (await stream.next_event()).id == event_id


@pytest.mark.redis
async def test_sigterm_sends_shutdown_and_the_client_resumes_on_another_process_missing_nothing(
    servers: Callable[..., ServerProcess], redis_settings: dict[str, str], token: Callable[..., str]
) -> None:
    env = redis_env(redis_settings)
    a, b = servers(env), servers(env)
    async with open_stream(a.url, token=token("alice")) as stream:
        seen = (await stream.next_event()).id if await publish(b.url, ["alice"]) else ""
        a.signal()
        shutdown = await stream.next_event()
        assert shutdown.event == "shutdown" and shutdown.retry is not None and shutdown.retry > 0
        with pytest.raises((StopAsyncIteration, httpx.RemoteProtocolError)):
            await stream.next_frame()
    missed = [await publish(b.url, ["alice"]) for _ in range(3)]
    # uvicorn re-raises the signal after a clean shutdown, so the exit status is "terminated by SIGTERM"
    assert await asyncio.to_thread(a.wait, 15) in (0, -signal.SIGTERM), a.logs()
    assert "Application shutdown complete" in a.logs()
    async with open_stream(b.url, token=token("alice"), headers={"Last-Event-ID": seen}) as resumed:
        live = await publish(b.url, ["alice"])
        assert [f.id for f in await resumed.events(4)] == [*missed, live]


@pytest.mark.redis
async def test_several_workers_share_one_redis_and_aggregate_metrics(
    servers: Callable[..., ServerProcess], redis_settings: dict[str, str], token: Callable[..., str]
) -> None:
    env = redis_env(redis_settings)
    server = servers(env, "--workers", "2")
    async with (
        open_stream(server.url, token=token("u1")) as s1,
        open_stream(server.url, token=token("u2")) as s2,
        open_stream(server.url, token=token("u3")) as s3,
        open_stream(server.url, token=token("u4")) as s4,
    ):
        event_id = await publish(server.url, ["u1", "u2", "u3", "u4"])
        for stream in (s1, s2, s3, s4):
            assert (await stream.next_event()).id == event_id
        async with httpx.AsyncClient(base_url=server.url) as client:
            text = (await client.get("/metrics")).text
        active = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("sse_connections_active{")
        )
        assert active == 4


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "tidings", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


async def test_cli_token_and_publish_work_against_a_running_server(
    servers: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = servers({})
    env = {
        "TIDINGS_JWT_SECRET": server.env["TIDINGS_JWT_SECRET"],
        "TIDINGS_PUBLISH_KEY": PUBLISH_KEY,
        "TIDINGS_DATA_DIR": str(tmp_path / "cli"),
    }
    minted = run_cli("token", "--user", "alice", "--role", "ops", env=env)
    assert minted.returncode == 0, minted.stderr
    async with open_stream(server.url, token=minted.stdout.strip()) as stream:
        result = await asyncio.to_thread(
            run_cli,
            "publish",
            "--type",
            "task.changed",
            "--to-role",
            "ops",
            "--data",
            '{"task_id": 9}',
            "--url",
            server.url,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        frame = await stream.next_event()
        assert frame.id == result.stdout.strip() and frame.json()["data"] == {"task_id": 9}


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"TIDINGS_PORT": "eighty"}, "TIDINGS_PORT"),
        ({"TIDINGS_BUS_URL": "kafka://x"}, "TIDINGS_BUS_URL"),
        ({"TIDINGS_ENV": "production", "TIDINGS_JWT_SECRET": ""}, "TIDINGS_JWT_SECRET"),
        ({"TIDINGS_KEEPALIVE_SECONDS": "-1"}, "TIDINGS_KEEPALIVE_SECONDS"),
    ],
)
def test_bad_configuration_fails_at_start_naming_the_variable(
    tmp_path: Path, env: dict[str, str], variable: str
) -> None:
    result = run_cli("serve", env={"TIDINGS_DATA_DIR": str(tmp_path), **env}, cwd=tmp_path)
    assert result.returncode == 2 and variable in result.stderr, result.stderr


def test_development_mode_prints_a_working_curl_pair(tmp_path: Path) -> None:
    """With no configuration at all, serve generates dev secrets and prints the walkthrough."""
    import os

    from support import free_port

    port = free_port()
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tidings", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=clean_env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines: list[str] = []
        assert proc.stderr is not None
        while not any("/v1/publish" in line for line in lines):
            lines.append(proc.stderr.readline())
        text = "".join(lines)
        assert "DEVELOPMENT MODE" in text and f"http://127.0.0.1:{port}/v1/events?token=" in text
        assert (tmp_path / ".tidings" / "dev-secrets.json").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
