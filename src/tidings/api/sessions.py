"""`POST /v1/sessions/revoke`: close a user's (or one session's) streams everywhere, e.g. on logout."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ..events import NAME_PATTERN
from .deps import HubDep, PublisherDep
from .errors import make_router

router = make_router(tags=["sessions"])


class Revocation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=256, pattern=NAME_PATTERN)
    jti: str | None = Field(None, min_length=1, max_length=256)


@router.post("/v1/sessions/revoke", summary="Close a user's or a session's streams on every process")
async def revoke(revocation: Revocation, hub: HubDep, publisher: PublisherDep) -> dict[str, bool]:
    await hub.revoke(revocation.user_id, jti=revocation.jti)
    return {"revoked": True}
