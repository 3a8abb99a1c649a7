"""`POST /v1/sessions/revoke`: close a user's (or one session's) streams everywhere, e.g. on logout."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request

from ..errors import validation_details
from ..events import NAME_PATTERN
from .body import read_json
from .deps import HubDep, PublisherDep
from .errors import make_router, validation_response
from .openapi import answers, json_body, model_schema

router = make_router(tags=["sessions"])

MAX_BODY_BYTES = 4096


class Revocation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=256, pattern=NAME_PATTERN)
    jti: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="one session; without it, every token of the user issued until now is refused",
    )


class Revoked(BaseModel):
    revoked: bool


@router.post(
    "/v1/sessions/revoke",
    summary="Close a user's or a session's streams on every process, and refuse their tokens from now on",
    response_model=Revoked,
    openapi_extra=json_body(model_schema(Revocation)),
    responses=answers(400, 401, 403, 413, 415, 422, 503),
)
async def revoke(request: Request, hub: HubDep, publisher: PublisherDep) -> Any:
    body = await read_json(request, limit=MAX_BODY_BYTES)  # read by hand, after authentication
    try:
        revocation = Revocation.model_validate(body)
    except ValidationError as exc:
        return validation_response(validation_details(exc.errors()))
    await hub.revoke(revocation.user_id, jti=revocation.jti)
    return Revoked(revoked=True)
