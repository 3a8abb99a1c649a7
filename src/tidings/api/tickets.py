"""`POST /v1/stream-tickets`: trade the user's JWT for a single-use ticket that opens one stream (`?ticket=`).

For EventSource, which cannot send an Authorization header: the ticket, not the long-lived JWT, then sits in the
URL (and any access log), and it is worthless once used or after TIDINGS_STREAM_TICKET_SECONDS. The store is
`tidings.tickets` (Redis with a Redis bus, so any process redeems it; memory otherwise).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Security
from pydantic import BaseModel, Field
from starlette.requests import Request

from ..auth import Principal
from ..errors import AuthError, NotStarted
from ..hub import Hub
from ..tickets import TicketStore
from .deps import USER, HubDep, request_token
from .errors import make_router
from .openapi import answers

router = make_router(tags=["streams"])

MAX_TICKET_CHARS = 64  # ours are 25; anything longer is not one of ours and is not hashed


class StreamTicket(BaseModel):
    ticket: str = Field(
        description="valid once, as `?ticket=` on /v1/events, /v1/admin/events, /v1/admin/feed"
    )
    expires_in: int = Field(description="seconds")


def _store(hub: Hub) -> TicketStore:
    if hub.runtime is None:
        raise NotStarted("the hub is not started: its ticket store is built at start")
    return hub.runtime.tickets


@router.post(
    "/v1/stream-tickets",
    status_code=201,
    summary="A single-use ticket (valid TIDINGS_STREAM_TICKET_SECONDS) that opens one stream as `?ticket=`",
    responses=answers(401, 403, 503),
)
async def issue_ticket(request: Request, hub: HubDep, _: Annotated[None, Security(USER)]) -> StreamTicket:
    settings = hub.settings
    # the stream it opens must be admissible: a token about to expire gets a 401 now, not a useless ticket
    principal = await hub.authenticate(
        request_token(request, settings.token_cookie), valid_for=settings.stream_min_token_seconds
    )
    ttl = settings.stream_ticket_seconds
    if principal.expires_at is not None:
        ttl = min(ttl, principal.expires_at - hub.clock())
    ticket = await _store(hub).issue(principal, ttl)
    return StreamTicket(ticket=ticket, expires_in=max(1, int(ttl)))


async def redeem_ticket(hub: Hub, ticket: str) -> Principal:
    """The principal a stream ticket stands for, used up; AuthError when it is invalid, or when its token has
    since come near its expiry or been revoked (a ticket never outlives what it stands for)."""
    if not ticket or len(ticket) > MAX_TICKET_CHARS:
        raise AuthError("the stream ticket is unknown, used or expired: fetch a new one", "invalid_ticket")
    principal = await _store(hub).redeem(ticket)
    expires = principal.expires_at
    if expires is not None and expires - hub.clock() < hub.settings.stream_min_token_seconds:
        raise AuthError("the token behind this ticket expires too soon: refresh it", "token_expired")
    if await hub.bus.is_token_revoked(principal.user_id, principal.jti, principal.issued_at):
        raise AuthError("this session was revoked", "token_revoked")
    return principal
