"""Inputs that were plain-text 500s answer a precise 4xx JSON error, on every route they can reach (issue 10).

Each case goes over HTTP to the real app; the database cases run on SQLite and on the real PostgreSQL (which
refuses NUL in text, where SQLite stores it)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from api_calls import Route, authenticated_routes, call, signed

from support import PUBLISH_KEY, InProcessServer, app_of
from tidings import Hub, Settings

NOW = int(time.time())


@pytest.fixture
async def client(make_settings: Callable[..., Settings]) -> AsyncIterator[tuple[httpx.AsyncClient, Hub]]:
    hub = Hub(make_settings(docs_enabled=True))
    async with (
        InProcessServer(app_of(hub)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
    ):
        yield http, hub


@pytest.fixture
async def db_client(
    make_settings: Callable[..., Settings], migrated_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, Hub]]:
    hub = Hub(make_settings(docs_enabled=True, database_url=migrated_url))
    async with (
        InProcessServer(app_of(hub)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
    ):
        yield http, hub


def claims(**values: Any) -> dict[str, Any]:
    return {"sub": "alice", "roles": ["admin", "publisher"], "iat": NOW, "exp": NOW + 600, **values}


async def answers(http: httpx.AsyncClient, hub: Hub, token: str) -> dict[str, tuple[int, Any]]:
    return {str(route): await call(http, route, token) for route in authenticated_routes(hub)}


def assert_all_401(results: dict[str, tuple[int, Any]], code: str = "invalid_token") -> None:
    wrong = {
        route: answer
        for route, answer in results.items()
        if answer[0] != 401 or not isinstance(answer[1], dict) or answer[1].get("error") != code
    }
    assert not wrong, wrong
    assert len(results) >= 11  # publish, revoke, the devices routes, the admin routes, both streams


async def test_a_validly_signed_exp_of_10_to_the_400_is_a_401_on_every_authenticated_route(
    client: tuple[httpx.AsyncClient, Hub],
) -> None:
    """Regression: `float(claims["exp"])` overflowed — a 500 on every authenticated route."""
    http, hub = client
    assert_all_401(await answers(http, hub, signed(claims(exp=10**400))))


@pytest.mark.parametrize(
    "payload",
    [
        claims(exp=1e300),  # was accepted: a stream that never expires
        claims(exp=10**20),
        claims(iat=-(10**400)),  # was accepted
        claims(nbf=-(10**400)),  # was accepted
        claims(iat=10**400),
        claims(nbf=10**400),
        claims(iat=True),
        f'{{"sub": "alice", "roles": ["admin"], "exp": {NOW + 600}, "nbf": Infinity}}',
        f'{{"sub": "alice", "roles": ["admin"], "exp": {NOW + 600}, "iat": NaN}}',
        '{"sub": "alice", "roles": ["admin"], "exp": NaN}',
    ],
    ids=[
        "exp=1e300",
        "exp=1e20",
        "iat=-1e400",
        "nbf=-1e400",
        "iat=1e400",
        "nbf=1e400",
        "iat=true",
        "nbf=Infinity",
        "iat=NaN",
        "exp=NaN",
    ],
)
async def test_absurd_time_claims_are_a_401_on_every_authenticated_route(
    client: tuple[httpx.AsyncClient, Hub], payload: dict[str, Any] | str
) -> None:
    http, hub = client
    assert_all_401(await answers(http, hub, signed(payload)))


@pytest.mark.parametrize(
    "sub", ["a\x00b", "a\ud800b", "a\nb", "a\x7fb"], ids=["NUL", "surrogate", "LF", "DEL"]
)
async def test_a_sub_with_a_control_character_is_a_401_on_every_authenticated_route(
    db_client: tuple[httpx.AsyncClient, Hub], sub: str
) -> None:
    """Regression: on PostgreSQL a NUL in `sub` reached the devices' queries (a 500); a lone surrogate could not
    even be encoded for SQLite or Redis."""
    http, hub = db_client
    assert_all_401(await answers(http, hub, signed(claims(sub=sub))))


@pytest.mark.parametrize("field", ["event_id", "user_id"])
async def test_a_nul_in_a_deliveries_filter_is_a_422_naming_it(
    db_client: tuple[httpx.AsyncClient, Hub], field: str
) -> None:
    """Regression: PostgreSQL refused the query ("invalid byte sequence for encoding UTF8: 0x00"): a 500."""
    http, _ = db_client
    admin = signed(claims())
    route = Route("GET", "/v1/admin/deliveries", "user")
    status, body = await call(http, route, admin, params={field: "a\x00b"})
    assert (status, body["error"], body["field"]) == (422, "validation_error", field)
    status, body = await call(http, route, admin, params={field: "ok-1"})
    assert status == 200 and body == {"deliveries": []}


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
async def test_an_occurred_at_with_no_utc_equivalent_is_a_422(
    client: tuple[httpx.AsyncClient, Hub], moment: str
) -> None:
    """Guard (fixed in events.py): valid ISO 8601 times that overflow once converted to UTC were a 500."""
    http, _ = client
    event = {"type": "order.created", "to": {"users": ["alice"]}, "occurred_at": moment}
    response = await http.post("/v1/publish", json=event, headers={"Authorization": f"Bearer {PUBLISH_KEY}"})
    assert response.status_code == 422 and response.json()["field"] == "occurred_at"
