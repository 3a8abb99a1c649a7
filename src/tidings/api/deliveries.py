"""GET /v1/admin/deliveries (role admin): the delivery log — "why didn't my phone buzz?"."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

from .deps import AdminDep, HubDep
from .errors import make_router

router = make_router(tags=["admin"])


@router.get("/v1/admin/deliveries", summary="Push attempts by event and/or user, newest first")
async def list_deliveries(
    hub: HubDep,
    _admin: AdminDep,
    event_id: Annotated[str | None, Query(max_length=64)] = None,
    user_id: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    rows = await hub.deliveries.query(event_id=event_id, user_id=user_id, limit=limit)
    return {"deliveries": [row.as_dict() for row in rows]}
