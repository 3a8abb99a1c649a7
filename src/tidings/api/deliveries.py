"""GET /v1/admin/deliveries (role admin): the delivery log — "why didn't my phone buzz?"."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

from ..errors import database_errors
from .deps import AdminDep, HubDep
from .errors import make_router
from .openapi import answers

router = make_router(tags=["admin"])

NO_CONTROL = r"^[^\x00-\x1f\x7f]+$"  # PostgreSQL refuses NUL in text; no user id holds a control character


@router.get(
    "/v1/admin/deliveries",
    summary="Push attempts by event and/or user, newest first",
    responses=answers(401, 403, 422, 503),
)
async def list_deliveries(
    hub: HubDep,
    _admin: AdminDep,
    event_id: Annotated[str | None, Query(min_length=1, max_length=64, pattern=NO_CONTROL)] = None,
    user_id: Annotated[str | None, Query(min_length=1, max_length=256, pattern=NO_CONTROL)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    with database_errors():
        rows = await hub.deliveries.query(event_id=event_id, user_id=user_id, limit=limit)
    return {"deliveries": [row.as_dict() for row in rows]}
