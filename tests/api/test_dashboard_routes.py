"""The dashboard's routes on a real socket: its files (CSP, ETag), the client scripts, the development login,
stats, the feed (published / delivery / stats frames), test events and presence — with the keys and types of the
examples in docs/dashboard-api.md (the contract the page was built against)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from tests.clients.dashboard_stub import examples

from support import InProcessServer, app_of, open_stream
from tidings import Hub, Settings
from tidings.api.clients import CLIENT, DASHBOARD

EXAMPLES = examples()
OPEN_MAPS = {"by_role", "disconnects", "by_provider", "configured", "active_by_provider"}


def same_shape(actual: Any, example: Any, where: str = "") -> None:
    """Same keys (maps keyed by names, like by_role, only need to be maps) and compatible types."""
    if isinstance(example, dict):
        assert isinstance(actual, dict), where
        if where.rsplit(".", 1)[-1] in OPEN_MAPS:
            return
        assert actual.keys() == example.keys(), (where, sorted(actual), sorted(example))
        for key, value in example.items():
            same_shape(actual[key], value, f"{where}.{key}")
    elif isinstance(example, bool):
        assert isinstance(actual, bool), where
    elif isinstance(example, int | float):
        assert actual is None or (isinstance(actual, int | float) and not isinstance(actual, bool)), where
    elif isinstance(example, str):
        assert actual is None or isinstance(actual, str), where
    elif isinstance(example, list):
        assert isinstance(actual, list), where
        for item in actual[:3]:
            if example:
                same_shape(item, example[0], where + "[]")


@pytest.fixture
async def dev_server(make_settings: Callable[..., Settings]) -> AsyncIterator[InProcessServer]:
    hub = Hub(make_settings(env="development", dashboard_stats_seconds=0.2))
    async with InProcessServer(app_of(hub)) as server:
        server.hub = hub  # type: ignore[attr-defined]
        yield server


async def test_the_dashboard_files_are_served_with_a_strict_policy(dev_server: InProcessServer) -> None:
    async with httpx.AsyncClient(base_url=dev_server.url) as http:
        redirect = await http.get("/dashboard")
        assert redirect.status_code == 307 and redirect.headers["location"] == "dashboard/"
        page = await http.get("/dashboard/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
        assert page.headers["cache-control"] == "no-cache"
        assert page.content == DASHBOARD["index.html"].body
        again = await http.get("/dashboard/", headers={"If-None-Match": page.headers["etag"]})
        assert again.status_code == 304 and not again.content
        for name in ("dashboard.js", "format.js", "dashboard.css"):
            answer = await http.get(f"/dashboard/{name}")
            assert answer.status_code == 200 and answer.content == DASHBOARD[name].body
        missing = await http.get("/dashboard/../config.py")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"


async def test_the_client_module_may_be_imported_from_anywhere_and_the_worker_is_always_revalidated(
    dev_server: InProcessServer,
) -> None:
    async with httpx.AsyncClient(base_url=dev_server.url) as http:
        client = await http.get("/v1/client.js", headers={"Origin": "https://elsewhere.example"})
        assert client.headers["content-type"] == "text/javascript; charset=utf-8"
        assert client.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in client.headers
        assert client.headers["cache-control"] == "public, max-age=300"
        assert client.content == CLIENT["tidings.js"].body
        etag = client.headers["etag"].strip('"')
        pinned = await http.get(f"/v1/client.js?v={etag}")
        assert pinned.headers["cache-control"] == "public, max-age=31536000, immutable"
        worker = await http.get("/v1/sw.js")
        assert worker.headers["cache-control"] == "no-cache"
        assert worker.headers["service-worker-allowed"] == "/"
        assert worker.content == CLIENT["sw.js"].body


async def test_the_development_login_exists_only_in_development(
    dev_server: InProcessServer, make_settings: Callable[..., Settings]
) -> None:
    async with httpx.AsyncClient(base_url=dev_server.url) as http:
        config = (await http.get("/v1/dashboard/config")).json()
        same_shape(config, EXAMPLES["config"])
        assert config["dev_login"] is True and config["environment"] == "development"
        minted = await http.post("/v1/admin/dev-token")
        assert minted.status_code == 200
        same_shape(minted.json(), EXAMPLES["dev-token"])
        stats = await http.get(
            "/v1/admin/stats", headers={"Authorization": f"Bearer {minted.json()['token']}"}
        )
        assert stats.status_code == 200
    production = Hub(make_settings())  # a JWT secret given: production
    async with InProcessServer(app_of(production)) as server, httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/v1/dashboard/config")).json()["dev_login"] is False
        refused = await http.post("/v1/admin/dev-token")
        assert refused.status_code == 404 and refused.json()["error"] == "not_found"
    off = Hub(make_settings(env="development", dashboard=False))
    async with InProcessServer(app_of(off)) as server, httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/dashboard/")).status_code == 404
        assert (await http.get("/v1/dashboard/config")).status_code == 404
        assert (await http.post("/v1/admin/dev-token")).status_code == 404


async def test_admin_routes_require_the_admin_role(
    dev_server: InProcessServer, token: Callable[..., str]
) -> None:
    async with httpx.AsyncClient(base_url=dev_server.url) as http:
        for method, path in [("GET", "/v1/admin/stats"), ("POST", "/v1/admin/test-event"),
                             ("GET", "/v1/admin/presence?user_id=alice")]:  # fmt: skip
            anonymous = await http.request(method, path)
            assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
            user = await http.request(method, path, headers={"Authorization": f"Bearer {token('alice')}"})
            assert user.status_code == 403 and user.json()["error"] == "forbidden"
        feed = await http.get("/v1/admin/feed", params={"token": token("alice")})
        assert feed.status_code == 403


async def test_the_feed_carries_published_events_deliveries_and_stats(
    dev_server: InProcessServer, token: Callable[..., str]
) -> None:
    admin = token("root", "admin")
    headers = {"Authorization": f"Bearer {admin}"}
    async with (
        open_stream(dev_server.url, "/v1/admin/feed", token=admin) as feed,
        open_stream(dev_server.url, token=token("alice")) as alice,
        httpx.AsyncClient(base_url=dev_server.url, headers=headers) as http,
    ):
        first = await feed.next_event()
        assert first.event == "stats" and first.id is None
        same_shape(first.json(), EXAMPLES["stats"])
        body = {
            "type": "dashboard.test",
            "data": {"note": "hi"},
            "to": {"users": ["alice"]},
            "push": "silent",
        }
        published = await http.post("/v1/admin/test-event", json=body)
        assert published.status_code == 202
        same_shape(published.json(), EXAMPLES["test-event"])
        event_id = published.json()["ids"][0]
        assert (await alice.next_event()).json()["id"] == event_id
        seen: dict[str, Any] = {}
        while {"published", "delivery"} - seen.keys():
            frame = await feed.next_event(timeout=10)
            assert frame.id is None  # a monitoring view: no ids, no resume
            if frame.event in ("published", "delivery") and frame.json().get("id", event_id) == event_id:
                seen[frame.event] = frame.json()
        same_shape(seen["published"], EXAMPLES["feed-published"])
        assert seen["published"]["to"]["users"] == ["alice"] and seen["published"]["recipients"] == 1
        assert seen["published"]["data_bytes"] == len('{"note":"hi"}')
        same_shape(seen["delivery"], EXAMPLES["feed-delivery"])
        assert seen["delivery"]["event_id"] == event_id and seen["delivery"]["outcome"] == "skipped"
        stats = (await http.get("/v1/admin/stats")).json()
        assert stats["events"]["published_total"] >= 1 and stats["connections"]["by_role"]["admin"] >= 1
    hub: Hub = dev_server.hub  # type: ignore[attr-defined]
    async with asyncio.timeout(10):
        while hub.streams.taps:  # the last feed closed: the tap goes (once the server saw the disconnect)
            await asyncio.sleep(0.02)


async def test_a_test_event_is_validated_like_a_publish(
    dev_server: InProcessServer, token: Callable[..., str]
) -> None:
    headers = {"Authorization": f"Bearer {token('root', 'admin')}"}
    async with httpx.AsyncClient(base_url=dev_server.url, headers=headers) as http:
        empty = await http.post("/v1/admin/test-event", json={"type": "dashboard.test", "to": {}})
        assert empty.status_code == 422 and empty.json()["field"] == "to"
        batch = await http.post("/v1/admin/test-event", json=[{"type": "a.b", "to": {"users": ["x"]}}])
        assert batch.status_code == 422
        twice = await http.post(
            "/v1/admin/test-event",
            content=b'{"type": "a.b", "to": {"users": ["x"]}, "to": {"broadcast": true}}',
            headers={"Content-Type": "application/json"},
        )
        assert twice.status_code == 400 and twice.json()["error"] == "duplicate_key"


async def test_presence_answers_for_the_cluster_and_lists_this_process_streams(
    dev_server: InProcessServer, token: Callable[..., str]
) -> None:
    headers = {"Authorization": f"Bearer {token('root', 'admin')}"}
    async with httpx.AsyncClient(base_url=dev_server.url, headers=headers) as http:
        offline = (await http.get("/v1/admin/presence", params={"user_id": "alice"})).json()
        assert offline["online"] is False and offline["connections"] == []
        async with open_stream(
            dev_server.url, token=token("alice", topics=["orders"]), params={"topics": "orders"}
        ):
            online = (await http.get("/v1/admin/presence", params={"user_id": "alice"})).json()
        same_shape(online, EXAMPLES["presence"])
        assert online["online"] is True and online["scope"] == "cluster" and online["connections_total"] == 1
        assert (
            online["connections"][0]["topics"] == ["orders"]
            and online["connections"][0]["endpoint"] == "events"
        )
