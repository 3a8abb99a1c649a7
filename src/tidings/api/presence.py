"""`GET /v1/presence?user_id=U` (publisher auth): is U online on any process, with how many streams, and when
they were last seen (ISO 8601, null when not within the retention)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Query

from .deps import HubDep, PublisherDep
from .errors import make_router
from .openapi import answers

router = make_router(tags=["presence"])


@router.get(
    "/v1/presence",
    summary="A user's presence across every process",
    responses=answers(401, 403, 422, 503),
)
async def presence(
    hub: HubDep,
    _publisher: PublisherDep,
    user_id: Annotated[str, Query(min_length=1, max_length=256, pattern=r"^[^\x00]+$")],
) -> dict[str, Any]:
    status = await hub.presence.status(user_id)
    seen = status.last_seen
    return {
        "user_id": user_id,
        "online": status.online,
        "connections": status.connections,
        "last_seen": None if seen is None else datetime.fromtimestamp(seen, UTC).isoformat(),
    }
