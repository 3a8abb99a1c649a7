"""CORS from an allow-list (preflights on the stream fast path too; nothing at all for other origins) and stream
tickets (single use, short-lived, bound to the token they stand for; shared by every process on Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from support import PLAIN_PROTOCOL, TIDINGS_PROTOCOL, InProcessServer, ManualClock, app_of, open_stream
from tidings import Hub, Settings
from tidings.api import mount
from tidings.auth import Principal
from tidings.errors import AuthError
from tidings.tickets import MemoryTickets, RedisTickets

ALLOWED = "http://app.localhost:5173"
REFUSED = "http://evil.localhost:5173"
PREFLIGHT = {
    "Access-Control-Request-Method": "GET",
    "Access-Control-Request-Headers": "authorization,last-event-id",
}


@pytest.fixture(params=[TIDINGS_PROTOCOL, PLAIN_PROTOCOL], ids=["socket-writes", "asgi-send"])
async def server(
    make_settings: Callable[..., Settings], request: pytest.FixtureRequest
) -> AsyncIterator[Any]:
    hub = Hub(make_settings(cors_origins=f"{ALLOWED}/"))  # normalised: the trailing slash goes
    async with InProcessServer(app_of(hub), http=request.param) as running:
        running.hub = hub  # type: ignore[attr-defined]
        yield running


def test_origins_must_be_exact(make_settings: Callable[..., Settings]) -> None:
    assert make_settings(cors_origins="HTTPS://App.Example:443, http://x.test:8080").cors_origins == [
        "https://app.example",
        "http://x.test:8080",
    ]
    for bad in ("*", "https://*.example", "https://app.example/path", "app.example", "ftp://x.test"):
        with pytest.raises(ValueError, match="origin"):
            make_settings(cors_origins=bad)


async def test_preflights_are_answered_for_listed_origins_only(server: Any) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        for path in ("/v1/events", "/v1/devices", "/v1/stream-tickets", "/v1/webpush/vapid-public-key"):
            ok = await http.options(path, headers={"Origin": ALLOWED, **PREFLIGHT})
            assert ok.status_code == 204, (path, ok.text)
            assert ok.headers["access-control-allow-origin"] == ALLOWED
            assert ok.headers["access-control-allow-credentials"] == "true"
            assert "last-event-id" in ok.headers["access-control-allow-headers"].lower()
            assert ok.headers["vary"] == "Origin"
            refused = await http.options(path, headers={"Origin": REFUSED, **PREFLIGHT})
            assert refused.status_code == 403 and refused.json()["error"] == "cors_refused"
            assert not [h for h in refused.headers if h.startswith("access-control-")]


async def test_a_cross_origin_stream_carries_the_grant_and_exposes_the_headers_clients_read(
    server: Any, token: Callable[..., str]
) -> None:
    headers = {"Origin": ALLOWED, "Authorization": f"Bearer {token('alice')}"}
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        async with http.stream("GET", "/v1/events", headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["access-control-allow-origin"] == ALLOWED
            assert response.headers["access-control-allow-credentials"] == "true"
            exposed = {
                h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
            }
            assert {"date", "retry-after", "x-reconnect-delay"} <= exposed
        async with http.stream("GET", "/v1/events", headers={**headers, "Origin": REFUSED}) as response:
            assert response.status_code == 200  # served (the browser blocks it): no grant at all
            assert not [h for h in response.headers if h.startswith("access-control-")]
        refused_401 = await http.get("/v1/events", headers={"Origin": ALLOWED})
        assert refused_401.status_code == 401  # errors carry the grant too, so the client can read the status
        assert refused_401.headers["access-control-allow-origin"] == ALLOWED
        admin = await http.get("/v1/admin/stats", headers={"Origin": ALLOWED})
        assert "access-control-allow-origin" not in admin.headers  # admin routes are same-origin only


async def test_without_origins_nothing_is_added(make_settings: Callable[..., Settings]) -> None:
    hub = Hub(make_settings())
    async with InProcessServer(app_of(hub)) as server, httpx.AsyncClient(base_url=server.url) as http:
        answer = await http.options("/v1/events", headers={"Origin": ALLOWED, **PREFLIGHT})
        assert answer.status_code == 405 and "access-control-allow-origin" not in answer.headers


async def test_a_hub_mounted_under_a_prefix_is_covered(
    make_settings: Callable[..., Settings], token: Callable[..., str]
) -> None:
    hub = Hub(make_settings(cors_origins=ALLOWED))
    app = FastAPI()
    mount(app, hub, prefix="/hub", handle_signals=False)
    async with (
        InProcessServer(app, http=PLAIN_PROTOCOL) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        ok = await http.options("/hub/v1/events", headers={"Origin": ALLOWED, **PREFLIGHT})
        assert ok.status_code == 204 and ok.headers["access-control-allow-origin"] == ALLOWED
        async with open_stream(
            server.url, "/hub/v1/events", token=token("alice"), headers={"Origin": ALLOWED}
        ):
            pass
        page = await http.get("/hub/dashboard")
        assert page.status_code == 307 and page.headers["location"] == "dashboard/"


# --- tickets -----------------------------------------------------------------------------------------------


async def _ticket(http: httpx.AsyncClient, bearer: str) -> str:
    answer = await http.post("/v1/stream-tickets", headers={"Authorization": f"Bearer {bearer}"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["expires_in"] == 60
    ticket: str = answer.json()["ticket"]
    assert ticket.startswith("st_") and len(ticket) >= 24
    return ticket


async def test_a_ticket_opens_one_stream_once_as_its_user(server: Any, token: Callable[..., str]) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        ticket = await _ticket(http, token("alice", "admin", topics=["orders"]))
        params = {"ticket": ticket, "topics": "orders"}
        async with open_stream(server.url, "/v1/admin/events", params=params) as stream:
            hub: Hub = server.hub
            await hub.publish("order.created", {"n": 1}, to={"topics": ["orders"]})
            assert (await stream.next_event()).json()["data"] == {"n": 1}
            (conn,) = list(hub.streams.connections())
            assert conn.principal.user_id == "alice" and conn.principal.topics.allows("orders")
            again = await http.get("/v1/events", params={"ticket": ticket})
            assert again.status_code == 401 and again.json()["error"] == "invalid_ticket"
        for bad in ("", "st_unknown", "x" * 500):
            answer = await http.get("/v1/events", params={"ticket": bad})
            assert answer.status_code == 401 and answer.json()["error"] == "invalid_ticket"
        anonymous = await http.post("/v1/stream-tickets")
        assert anonymous.status_code == 401


async def test_a_ticket_does_not_outlive_its_token_or_its_revocation(
    make_settings: Callable[..., Settings], token: Callable[..., str]
) -> None:
    clock = ManualClock()
    hub = Hub(make_settings(jwt_leeway_seconds=0), clock=clock)
    async with InProcessServer(app_of(hub)) as server, httpx.AsyncClient(base_url=server.url) as http:
        short = await http.post(
            "/v1/stream-tickets", headers={"Authorization": f"Bearer {token('bob', ttl=20)}"}
        )
        assert 15 <= short.json()["expires_in"] <= 20  # never longer than the token behind it
        clock.advance(61)
        late = await _ticket(http, token("bob", ttl=3600))
        old = await http.get("/v1/events", params={"ticket": short.json()["ticket"]})
        assert old.status_code == 401 and old.json()["error"] == "invalid_ticket"  # expired with its token
        clock.advance(61)
        expired = await http.get("/v1/events", params={"ticket": late})
        assert expired.status_code == 401 and expired.json()["error"] == "invalid_ticket"
        revoked_ticket = await _ticket(http, token("bob", ttl=3600))
        await hub.revoke("bob")
        revoked = await http.get("/v1/events", params={"ticket": revoked_ticket})
        assert revoked.status_code == 401 and revoked.json()["error"] == "token_revoked"


async def test_the_memory_store_is_bounded() -> None:
    store = MemoryTickets(limit=3)
    principal = Principal("alice", expires_at=None)
    tickets = [await store.issue(principal, 60) for _ in range(5)]
    assert len(store) == 3
    with pytest.raises(AuthError):
        await store.redeem(tickets[0])  # the oldest were forgotten
    assert (await store.redeem(tickets[-1])).user_id == "alice"


async def test_on_redis_a_ticket_is_used_once_across_processes(
    redis_settings: dict[str, str], make_settings: Callable[..., Settings], token: Callable[..., str]
) -> None:
    settings = make_settings(**redis_settings, worker_in_process=False)
    first, second = Hub(settings), Hub(settings)
    async with first.lifespan(), second.lifespan():
        assert first.runtime is not None and second.runtime is not None
        assert isinstance(first.runtime.tickets, RedisTickets)
        principal = await first.authenticate(token("carol", "admin", topics=["a.*"]))
        ticket = await first.runtime.tickets.issue(principal, 60)
        results = await asyncio.gather(
            first.runtime.tickets.redeem(ticket),
            second.runtime.tickets.redeem(ticket),
            return_exceptions=True,
        )
        won = [r for r in results if isinstance(r, Principal)]
        assert len(won) == 1 and sum(isinstance(r, AuthError) for r in results) == 1
        assert won[0] == principal  # the same user, roles, jti, expiry and topic grants
