"""Shared fixtures: settings, a started hub, Redis (real, at 127.0.0.1:6379), servers on free ports."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from support import PLAIN_PROTOCOL, PUBLISH_KEY, SECRET, TIDINGS_PROTOCOL, InProcessServer
from tidings import Hub, Settings
from tidings.auth import mint_token

pytest_plugins = ["fixtures.db"]

REDIS_URL = os.environ.get("TIDINGS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"


def require(ok: bool, what: str) -> None:
    """Skip locally, fail in CI: a missing service must never turn CI green by skipping."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{what} is required when CI=true")
    pytest.skip(f"{what} is not available (set CI=true to make this a failure)")


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
    hub = Hub(make_settings(), handle_signals=False)
    async with hub.lifespan():
        yield hub


@pytest.fixture(params=[TIDINGS_PROTOCOL, PLAIN_PROTOCOL], ids=["socket-writes", "asgi-send"])
async def server(
    make_settings: Callable[..., Settings], request: pytest.FixtureRequest
) -> AsyncIterator[InProcessServer]:
    """The standalone app on a real socket, in this loop, under both stream write paths; `server.hub` is its hub."""
    from tidings.app import create_app

    hub = Hub(make_settings(keepalive_seconds=30), handle_signals=False)
    async with InProcessServer(create_app(hub), http=request.param) as running:
        running.hub = hub  # type: ignore[attr-defined]
        yield running
