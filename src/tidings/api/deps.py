"""FastAPI dependencies: the hub, and who is calling (user, admin, publisher)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from ..auth import ADMIN_ROLE, Principal, bearer_token
from ..errors import ApiError, AuthError, NotStarted
from ..hub import Hub

HUB_STATE = "tidings_hub"  # where the router's lifespan leaves the hub: app.state.tidings_hub


def hub_of(request: HTTPConnection) -> Hub:
    hub = getattr(request.app.state, HUB_STATE, None)
    if not isinstance(hub, Hub):
        raise NotStarted("the tidings hub is not started: include its router (its lifespan starts the hub)")
    return hub


def request_token(request: HTTPConnection, cookie: str) -> str | None:
    """A user's JWT: `Authorization: Bearer`, else `?token=`, else the configured cookie."""
    return (
        bearer_token(request.headers.get("authorization"))
        or request.query_params.get("token")
        or (request.cookies.get(cookie) if cookie else None)
    )


async def get_hub(request: HTTPConnection) -> Hub:  # async: FastAPI runs a sync dependency in a thread
    return hub_of(request)


async def require_user(request: HTTPConnection) -> Principal:
    hub = hub_of(request)
    return await hub.authenticate(request_token(request, hub.settings.token_cookie))


async def require_admin(principal: Annotated[Principal, Depends(require_user)]) -> Principal:
    if not principal.has_role(ADMIN_ROLE):
        raise ApiError(403, "forbidden", f"this endpoint requires the role {ADMIN_ROLE!r}")
    return principal


async def require_publisher(request: HTTPConnection) -> Principal:
    credential = bearer_token(request.headers.get("authorization"))
    if credential is None:
        raise AuthError("send Authorization: Bearer <publish key or publisher JWT>", "unauthorized")
    return await hub_of(request).verifier.verify_publisher(credential)


HubDep = Annotated[Hub, Depends(get_hub)]
UserDep = Annotated[Principal, Depends(require_user)]
AdminDep = Annotated[Principal, Depends(require_admin)]
PublisherDep = Annotated[Principal, Depends(require_publisher)]
