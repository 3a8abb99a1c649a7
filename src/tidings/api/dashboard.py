"""The dashboard's data routes (docs/dashboard-api.md): config, development login, stats, test events, presence.

Every route but the config and the development login requires the role `admin`. The live feed is api/feed.py;
the page's files are api/clients.py.
"""

from __future__ import annotations

import ipaddress
import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Query
from starlette.requests import Request

from .. import __version__
from ..auth import mint_token
from ..errors import ApiError
from ..hub import Hub
from ..stats import snapshot
from .body import read_json
from .deliveries import NO_CONTROL
from .deps import AdminDep, HubDep
from .errors import make_router
from .openapi import EVENT_SCHEMA, answers, json_body

log = logging.getLogger("tidings.dashboard")
router = make_router(tags=["admin"])

DEV_TOKEN_SECONDS = 3600
DEV_ADMIN = "dev-admin"
DEV_ROLES = ("admin", "publisher")


def _dev_login_possible(hub: Hub) -> bool:
    return hub.settings.is_development and hub.settings.dashboard and bool(hub.settings.jwt_secret)


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@router.get(
    "/v1/dashboard/config", summary="What the dashboard's login screen offers", responses=answers(404)
)
async def dashboard_config(request: Request, hub: HubDep) -> dict[str, Any]:
    if not hub.settings.dashboard:
        raise ApiError(404, "not_found", "the dashboard is off (TIDINGS_DASHBOARD=false)")
    return {
        "version": __version__,
        "environment": hub.settings.env.value,
        "dev_login": _dev_login_possible(hub) and _loopback(request),
    }


@router.post("/v1/admin/dev-token", include_in_schema=False)
async def dev_token(request: Request, hub: HubDep) -> dict[str, Any]:
    """Development mode, from a loopback address only: an admin token in one click. Anywhere else it does not
    exist (404, exactly like a missing route). Behind a proxy on the same host every client looks local: this is
    why production mode never has it."""
    if not (_dev_login_possible(hub) and _loopback(request)):
        raise ApiError(404, "not_found", "Not Found")
    now = hub.clock()
    token = mint_token(hub.settings.jwt_secret, DEV_ADMIN, DEV_ROLES, ttl=DEV_TOKEN_SECONDS, now=now)
    expires = datetime.fromtimestamp(int(now + DEV_TOKEN_SECONDS), UTC)
    log.warning("development login: token minted for %s", DEV_ADMIN)
    return {
        "token": token,
        "user_id": DEV_ADMIN,
        "roles": list(DEV_ROLES),
        "expires_at": expires.isoformat().replace("+00:00", "Z"),
    }


@router.get(
    "/v1/admin/stats",
    summary="Counters: connections by role, events, push outcomes by provider, queue depth (role admin)",
    responses=answers(401, 403, 503),
)
async def admin_stats(hub: HubDep, _admin: AdminDep) -> dict[str, Any]:
    return await snapshot(hub)


@router.post(
    "/v1/admin/test-event",
    status_code=202,
    summary="Publish one event as an admin (no publish key needed): the dashboard's test form",
    openapi_extra=json_body(EVENT_SCHEMA, "One event, as for POST /v1/publish"),
    responses=answers(400, 401, 403, 413, 415, 422, 503),
)
async def test_event(request: Request, hub: HubDep, admin: AdminDep) -> dict[str, list[str]]:
    body = await read_json(request, limit=hub.settings.max_data_bytes + 16_384)
    if not isinstance(body, dict):
        raise ApiError(422, "validation_error", "send one event (a JSON object)", field="")
    events = hub.validate_events([body], indexed=False)
    ids = await hub.publish_events(events)
    log.info("test event", extra={"admin": admin.user_id, "event_ids": ids, "event_type": events[0].type})
    return {"ids": ids}


@router.get(
    "/v1/admin/presence",
    summary="Whether a user is connected, and how (role admin)",
    responses=answers(401, 403, 422, 503),
)
async def admin_presence(
    hub: HubDep,
    _admin: AdminDep,
    user_id: Annotated[str, Query(min_length=1, max_length=256, pattern=NO_CONTROL)],
) -> dict[str, Any]:
    local = [
        {
            "id": conn.id,
            "endpoint": conn.endpoint,
            "role": "admin" if conn.endpoint != "events" else "user",
            "topics": [c[2:] for c in conn.channels if c.startswith("t:")],
            "ip": conn.ip,
            "opened_at": _iso(conn.opened_at),
        }
        for conn in hub.streams.connections()
        if conn.principal.user_id == user_id and not conn.closed
    ]
    status = await hub.presence.status(user_id)  # the whole cluster, with last seen
    answer: dict[str, Any] = {
        "user_id": user_id,
        "online": status.online,
        "scope": "cluster",
        "connections_total": status.connections,
        "last_seen": _iso(status.last_seen) if status.last_seen is not None else None,
        "connections": local,
    }
    return answer


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
