"""FastAPI dependencies: the hub, and who is calling (user, admin, publisher)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

from ..auth import ADMIN_ROLE, Principal, bearer_token
from ..errors import ApiError, AuthError
from ..hub import Hub  # hub.py imports the api package lazily, so this is not circular


def hub_of(request: Request) -> Hub:
    hub = getattr(request.app.state, "tidings_hub", None)
    if hub is None:
        raise RuntimeError("the tidings hub is not started: include hub.router (its lifespan sets it up)")
    assert isinstance(hub, Hub)
    return hub


async def get_hub(request: Request) -> Hub:  # async: FastAPI runs a sync dependency in a thread, per request
    return hub_of(request)


async def require_user(request: Request) -> Principal:
    return await hub_of(request).authenticate(request)


async def require_admin(principal: Annotated[Principal, Depends(require_user)]) -> Principal:
    if not principal.has_role(ADMIN_ROLE):
        raise ApiError(403, "forbidden", f"this endpoint requires the role {ADMIN_ROLE!r}")
    return principal


async def require_publisher(request: Request) -> Principal:
    credential = bearer_token(request.headers.get("authorization"))
    if credential is None:
        raise ApiError(
            401,
            "unauthorized",
            "send Authorization: Bearer <publish key or publisher JWT>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        return await hub_of(request).verifier.verify_publisher(credential)
    except AuthError as exc:
        status = 403 if exc.code == "forbidden" else 401
        raise ApiError(status, exc.code, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc


HubDep = Annotated[Hub, Depends(get_hub)]
UserDep = Annotated[Principal, Depends(require_user)]
AdminDep = Annotated[Principal, Depends(require_admin)]
PublisherDep = Annotated[Principal, Depends(require_publisher)]
