"""Fixtures of the bus tests: a redis-server of the test's own (`redis_process.RedisServer`)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis_process import RedisServer

from support import require


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start a redis-server of this test's own: `redis_server(**{"client-output-buffer-limit": "..."})`."""
    require(shutil.which("redis-server") is not None, "the redis-server binary")
    started: list[RedisServer] = []

    def start(**options: str) -> RedisServer:
        directory = tmp_path / f"redis{len(started)}"
        directory.mkdir()
        server = RedisServer(directory, options)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc and server.proc.poll() is None:
            server.kill()


@pytest.fixture
def own_redis(redis_server: Callable[..., RedisServer]) -> RedisServer:
    return redis_server()
