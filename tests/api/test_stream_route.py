"""`stream_route`: the hub's stream at a host app's own path, with its own role, per-user limit and keepalive —
over a real socket under both write paths (`tidings serve`'s protocol and plain ASGI `send`), mounted in a
FastAPI app, and around the app's middleware with `StreamFastPath`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.middleware.base import BaseHTTPMiddleware

from support import PLAIN_PROTOCOL, TIDINGS_PROTOCOL, InProcessServer, ManualClock, frozen_clock, open_stream
from tidings import Hub, Settings
from tidings.api import StreamFastPath, mount, stream_route

PROTOCOLS = pytest.mark.parametrize("protocol", [TIDINGS_PROTOCOL, PLAIN_PROTOCOL], ids=["socket", "asgi"])


def host_app(hub: Hub, *, fast_path: bool = False, **options: Any) -> Any:
    """A host app with the hub under /hub and an admin stream of its own at /api/admin/events."""
    app = FastAPI()
    mount(app, hub, prefix="/hub", handle_signals=False)
    route = stream_route(hub, "/api/admin/events", role="admin", **options)
    app.router.routes.append(route)
    if not fast_path:
        return app
    seen: list[str] = []

    async def count(request: Any, call_next: Any) -> Any:  # a middleware the streams must not go through
        seen.append(request.url.path)
        return await call_next(request)

    app.add_middleware(BaseHTTPMiddleware, dispatch=count)
    wrapped = StreamFastPath(app, {route.path: route.endpoint})
    wrapped.seen = seen  # type: ignore[attr-defined]
    return wrapped


@asynccontextmanager
async def serving(app: Any, protocol: str) -> AsyncIterator[InProcessServer]:
    async with InProcessServer(app, http=protocol) as server:
        yield server


@PROTOCOLS
async def test_the_route_carries_the_roles_events_and_refuses_other_users(
    make_settings: Callable[..., Settings], token: Callable[..., str], protocol: str
) -> None:
    hub = Hub(make_settings())
    async with serving(host_app(hub, limit=1), protocol) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            refused = await client.get("/api/admin/events", params={"token": token("carol", "courier")})
            assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
            anonymous = await client.get("/api/admin/events")
            assert anonymous.status_code == 401
            wrong_method = await client.post("/api/admin/events")
            assert wrong_method.status_code == 405
        async with open_stream(server.url, "/api/admin/events", token=token("root", "admin")) as stream:
            [conn] = list(hub.streams.connections())
            assert conn.endpoint == "/api/admin/events"
            assert conn.attached == (protocol == TIDINGS_PROTOCOL)
            event_id = await hub.publish("order.created", {"order_id": 7}, to={"roles": ["admin"]})
            await hub.publish("order.created", {"order_id": 8}, to={"roles": ["courier"]})
            frame = await stream.next_event()
            assert (frame.id, frame.json()["data"]) == (event_id, {"order_id": 7})
            await stream.assert_silent(0.2)


@PROTOCOLS
async def test_the_limit_is_per_user_on_this_route_only(
    make_settings: Callable[..., Settings], token: Callable[..., str], protocol: str
) -> None:
    hub = Hub(make_settings())
    root = token("root", "admin")
    async with serving(host_app(hub, limit=1), protocol) as server:
        async with (
            open_stream(server.url, "/hub/v1/admin/events", token=root) as hub_admin,
            open_stream(server.url, "/api/admin/events", token=root) as first,
            open_stream(server.url, "/api/admin/events", token=token("ann", "admin")) as other_admin,
        ):
            async with open_stream(server.url, "/api/admin/events", token=root) as second:
                with pytest.raises((StopAsyncIteration, httpx.RemoteProtocolError)):
                    await first.next_frame(timeout=5)  # the older stream of root on this route ends
                event_id = await hub.publish("order.created", {}, to={"roles": ["admin"]})
                for stream in (second, other_admin, hub_admin):  # another user, another route: untouched
                    assert (await stream.next_event()).id == event_id


async def test_the_keepalive_is_the_routes_own(
    make_settings: Callable[..., Settings], token: Callable[..., str]
) -> None:
    clock: ManualClock = frozen_clock()
    hub = Hub(make_settings(keepalive_seconds=30), clock=clock)
    async with serving(host_app(hub, keepalive=5), PLAIN_PROTOCOL) as server:
        async with (
            open_stream(server.url, "/api/admin/events", token=token("root", "admin")) as own,
            open_stream(server.url, "/hub/v1/events", token=token("root", "admin")) as default,
        ):
            clock.advance(6)
            hub.streams.sweep()  # the sweep runs once a second; run it now, at the moved clock
            assert (await own.next_frame(timeout=5)).comments == ["keepalive"]
            event_id = await hub.publish("order.created", {}, to={"users": ["root"]})
            assert (await default.next_frame(timeout=5)).id == event_id  # no keepalive came first
            clock.advance(30)  # 30 s since the default stream's last write (the event)
            hub.streams.sweep()
            assert (await default.next_frame(timeout=5)).comments == ["keepalive"]


@PROTOCOLS
async def test_the_fast_path_serves_the_route_around_the_apps_middleware(
    make_settings: Callable[..., Settings], token: Callable[..., str], protocol: str
) -> None:
    hub = Hub(make_settings())
    app = host_app(hub, fast_path=True)
    async with serving(app, protocol) as server:
        async with open_stream(server.url, "/api/admin/events", token=token("root", "admin")) as stream:
            event_id = await hub.publish("order.created", {}, to={"roles": ["admin"]})
            assert (await stream.next_event()).id == event_id
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/hub/healthz")).status_code == 200
    assert app.seen == ["/hub/healthz"]  # the stream never went through the middleware


def test_bad_arguments_are_refused_at_once(make_settings: Callable[..., Settings]) -> None:
    hub = Hub(make_settings())
    for path, options in (
        ("events", {}),
        ("/orders/{id}/events", {}),
        ("/events", {"limit": -1}),
        ("/events", {"keepalive": 0}),
    ):
        with pytest.raises(ValueError):
            stream_route(hub, path, **options)
