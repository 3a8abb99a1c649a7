"""Device registration API: register, list and remove the caller's push targets; an admin listing.

Deliberate choices:
- The body is read by hand (at most 16 KiB) after authentication, so an anonymous client cannot make the
  server parse a large body; validation errors are rendered exactly like FastAPI's (422 naming the field).
- Someone else's device answers 404 exactly like a missing one, so ids and tokens cannot be probed.
- A busy or unreachable database answers 503 with Retry-After, never 500.
"""

from __future__ import annotations

import weakref
from datetime import datetime
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from ..errors import ApiError, database_errors, validation_details
from ..hub import Hub
from ..push.endpoints import EndpointPolicy
from ..registry.ratelimit import RegistrationLimiter
from ..registry.store import Device, valid_user_id
from ..registry.validation import DeviceIn, PolicyViolation, check_policy
from .body import read_json
from .deps import AdminDep, HubDep, UserDep
from .errors import make_router, validation_response
from .openapi import answers, json_body, model_schema

router = make_router(tags=["devices"])

MAX_BODY_BYTES = 16_384
DEVICE_ID = r"^[0-9a-f]{32}$"


class DeviceOut(BaseModel):
    """A device as its owner (or an admin) sees it. Web Push keys are not echoed back."""

    id: str
    user_id: str
    provider: str
    platform: str
    token: str
    environment: str | None
    app_id: str | None
    name: str | None
    locale: str | None
    timezone: str | None
    active: bool
    created_at: datetime
    updated_at: datetime
    last_seen_at: datetime
    last_used_at: datetime | None
    disabled_at: datetime | None
    disabled_reason: str | None

    @classmethod
    def of(cls, device: Device) -> DeviceOut:
        fields = {name: getattr(device, name) for name in cls.model_fields if name != "active"}
        return cls(active=device.active, **fields)


class DeviceList(BaseModel):
    devices: list[DeviceOut]


class DevicePage(BaseModel):
    devices: list[DeviceOut]
    next_cursor: str | None


class _PerHub:
    """What the routes keep per hub: its rate limiter and endpoint policy (built from its settings)."""

    def __init__(self, hub: Hub) -> None:
        s = hub.settings
        self.limiter = RegistrationLimiter(s.device_register_rate_per_minute, clock=hub.clock)
        self.policy = EndpointPolicy.from_lists(s.webpush_http_hosts, s.webpush_allowed_hosts)


_per_hub: weakref.WeakKeyDictionary[Hub, _PerHub] = weakref.WeakKeyDictionary()


def _state(hub: Hub) -> _PerHub:
    state = _per_hub.get(hub)
    if state is None:
        state = _per_hub[hub] = _PerHub(hub)
    return state


async def _parse(request: Request, hub: Hub) -> DeviceIn | Response:
    body: Any = await read_json(request, limit=MAX_BODY_BYTES)
    try:
        device = DeviceIn.model_validate(body)
        check_policy(device, _state(hub).policy)
    except ValidationError as exc:
        return validation_response(validation_details(exc.errors()))
    except PolicyViolation as exc:
        return validation_response([{"field": exc.field, "message": exc.message}])
    return device


_BODY = json_body(
    model_schema(DeviceIn)
)  # read by hand (see the module docstring): OpenAPI is told its shape
_REGISTER_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"model": DeviceOut, "description": "Already registered: refreshed"},
    **answers(400, 401, 403, 413, 415, 422, 429, 503),
}


@router.post(
    "/v1/devices",
    status_code=201,
    summary="Register a device (upsert)",
    responses=_REGISTER_ANSWERS,
    openapi_extra=_BODY,
)
@router.post(
    "/v1/devices/register",
    status_code=201,
    summary="Alias of POST /v1/devices",
    responses=_REGISTER_ANSWERS,
    openapi_extra=_BODY,
)
async def register_device(request: Request, hub: HubDep, user: UserDep, response: Response) -> Any:
    refused = _state(hub).limiter.check(user.user_id)
    if refused is not None:
        raise ApiError(429, "rate_limited", "too many device registrations; retry later",
                       headers={"Retry-After": str(refused.retry_after)})  # fmt: skip
    if not valid_user_id(user.user_id):
        raise ApiError(
            400, "invalid_subject", "the token's subject cannot own devices (1-256 characters, no NUL)"
        )
    parsed = await _parse(request, hub)
    if isinstance(parsed, Response):
        return parsed
    for topic in parsed.topics:
        if not await hub.may_read_topic(user, topic):
            raise ApiError(403, "forbidden", f"you may not subscribe to topic {topic!r}", field="topics")
    with database_errors():
        device, created = await hub.devices.register(user.user_id, parsed, roles=user.roles)
    response.status_code = 201 if created else 200
    return DeviceOut.of(device)


@router.get("/v1/devices", summary="The caller's devices", responses=answers(401, 503))
async def list_devices(hub: HubDep, user: UserDep) -> DeviceList:
    with database_errors():
        devices = await hub.devices.list_for_user(user.user_id)
    return DeviceList(devices=[DeviceOut.of(d) for d in devices])


@router.delete(
    "/v1/devices/{device_id}",
    status_code=204,
    summary="Remove one of the caller's devices",
    responses=answers(401, 404, 422, 503),
)
async def remove_device(
    device_id: Annotated[str, Path(max_length=64)], hub: HubDep, user: UserDep
) -> Response:
    removed = False
    if len(device_id) == 32 and all(c in "0123456789abcdef" for c in device_id):
        with database_errors():
            removed = await hub.devices.remove(user.user_id, device_id=device_id)
    return _removed(removed)


@router.delete(
    "/v1/devices",
    status_code=204,
    summary="Remove the caller's device with this token",
    responses=answers(401, 404, 422, 503),
)
async def remove_device_by_token(
    hub: HubDep, user: UserDep, token: Annotated[str, Query(min_length=1, max_length=4096)]
) -> Response:
    with database_errors():
        removed = await hub.devices.remove(user.user_id, token=token)
    return _removed(removed)


def _removed(removed: bool) -> Response:
    if not removed:
        raise ApiError(404, "not_found", "no such device")
    return Response(status_code=204)


@router.get(
    "/v1/admin/devices",
    summary="All devices, or one user's (role admin), in pages",
    responses=answers(401, 403, 422, 503),
)
async def admin_list_devices(
    hub: HubDep,
    admin: AdminDep,
    user_id: Annotated[str | None, Query(min_length=1, max_length=256, pattern=r"^[^\x00]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(pattern=DEVICE_ID, description="a page's next_cursor")] = None,
) -> DevicePage:
    with database_errors():
        devices, next_cursor = await hub.devices.admin_list(user_id=user_id, limit=limit, cursor=cursor)
    return DevicePage(devices=[DeviceOut.of(d) for d in devices], next_cursor=next_cursor)
