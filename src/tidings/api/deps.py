"""FastAPI dependencies: the hub, and who is calling (user, admin, publisher)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Security
from fastapi.security import HTTPBearer
from starlette.requests import HTTPConnection

from ..auth import ADMIN_ROLE, Principal, bearer_token
from ..errors import ApiError, AuthError, NotStarted
from ..hub import Hub

HUB_STATE = "tidings_hub"  # where the router's lifespan leaves the hub: app.state.tidings_hub


class BearerScheme(HTTPBearer):
    """Declares a bearer credential in the OpenAPI document (and /docs' Authorize button); the routes' own
    dependencies below read and check it, so this one does nothing at run time."""

    def __init__(self, name: str, description: str) -> None:
        super().__init__(scheme_name=name, description=description, auto_error=False)

    async def __call__(self, request: HTTPConnection) -> None:
        return None


USER = BearerScheme("user", "The user's JWT (streams also take `?token=` or the TIDINGS_TOKEN_COOKIE cookie)")
PUBLISHER = BearerScheme(
    "publisher", "The publish key (TIDINGS_PUBLISH_KEY), or a JWT with the role `publisher`"
)
METRICS = BearerScheme("metrics", "TIDINGS_METRICS_TOKEN, when it is set")


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


async def require_user(request: HTTPConnection, _: Annotated[None, Security(USER)]) -> Principal:
    hub = hub_of(request)
    return await hub.authenticate(request_token(request, hub.settings.token_cookie))


async def require_admin(principal: Annotated[Principal, Depends(require_user)]) -> Principal:
    if not principal.has_role(ADMIN_ROLE):
        raise ApiError(403, "forbidden", f"this endpoint requires the role {ADMIN_ROLE!r}")
    return principal


async def require_publisher(request: HTTPConnection, _: Annotated[None, Security(PUBLISHER)]) -> Principal:
    credential = bearer_token(request.headers.get("authorization"))
    if credential is None:
        raise AuthError("send Authorization: Bearer <publish key or publisher JWT>", "unauthorized")
    return await hub_of(request).verifier.verify_publisher(credential)


HubDep = Annotated[Hub, Depends(get_hub)]
UserDep = Annotated[Principal, Depends(require_user)]
AdminDep = Annotated[Principal, Depends(require_admin)]
PublisherDep = Annotated[Principal, Depends(require_publisher)]
