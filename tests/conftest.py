"""Shared fixtures: settings, a started hub, Redis (real, at 127.0.0.1:6379), servers on free ports."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from support import (
    IN_CI,
    PLAIN_PROTOCOL,
    PUBLISH_KEY,
    REDIS_URL,
    SECRET,
    TIDINGS_PROTOCOL,
    InProcessServer,
    ManualClock,
    app_of,
    redis_or_skip,
    require,
)
from tidings import Hub, Settings
from tidings.auth import mint_token

pytest_plugins = ["fixtures.db"]

__all__ = ["IN_CI", "require"]  # older test modules import these from here


@pytest.fixture
def clock() -> ManualClock:
    """Real time plus an offset the test moves (`clock.advance(s)`); see ManualClock."""
    return ManualClock()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "jwt_secret": SECRET,
            "publish_key": PUBLISH_KEY,
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'tidings.db'}",
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture
def token() -> Callable[..., str]:
    def mint(user: str = "alice", *roles: str, ttl: float = 3600, **claims: Any) -> str:
        return mint_token(SECRET, user, list(roles), ttl=ttl, claims=claims)

    return mint


@pytest.fixture
async def redis_client() -> AsyncIterator[Any]:
    client = await redis_or_skip()
    yield client
    await client.aclose()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test's own on the shared Redis."""
    return f"tidings-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def redis_settings(redis_available: bool) -> Iterator[dict[str, str]]:
    """Bus settings on the real Redis with a key prefix (and so pub/sub channel) of this test's own."""
    require(redis_available, f"Redis at {REDIS_URL}")
    prefix = f"tidings-test-{uuid.uuid4().hex[:10]}"
    yield {"bus_url": REDIS_URL, "redis_prefix": prefix}
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
async def hub(make_settings: Callable[..., Settings]) -> AsyncIterator[Hub]:
    hub = Hub(make_settings())
    async with hub.lifespan():
        yield hub


@pytest.fixture(params=[TIDINGS_PROTOCOL, PLAIN_PROTOCOL], ids=["socket-writes", "asgi-send"])
async def server(
    make_settings: Callable[..., Settings], request: pytest.FixtureRequest
) -> AsyncIterator[InProcessServer]:
    """The standalone app on a real socket, in this loop, under both stream write paths; `server.hub` is its hub."""

    hub = Hub(make_settings(keepalive_seconds=30))
    async with InProcessServer(app_of(hub), http=request.param) as running:
        running.hub = hub  # type: ignore[attr-defined]
        yield running
