"""The caller's own inbox — `GET /v1/inbox`, `GET /v1/inbox/counts`, `POST /v1/inbox/{read,seen,archive}` — and an
admin's look at a user's inbox, `GET /v1/admin/inbox`.

The reader is the token: its user, its roles and the topics its topics claim names exactly. Marks take
`{"ids": [...]}` (at most TIDINGS_INBOX_MAX_IDS_PER_REQUEST) or `{"all": true}` (optionally `"up_to"`: the newest
item the client has shown) and answer the new counts. Bad input is a 4xx that changes nothing: a cursor this
server did not issue (422, field `cursor`), ids not in the caller's inbox (404, listed in the message), too many
ids (422, field `ids`), a body over its limit (413). A busy or unreachable database is a 503.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator
from starlette.requests import Request
from starlette.responses import Response

from ..events import CATEGORY_PATTERN
from ..hub import Hub
from ..inbox import MAX_PAGE, Counts, InboxItem, Mark, Page
from .body import read_json
from .deps import AdminDep, HubDep, UserDep
from .errors import make_router, validation_response
from .openapi import answers, json_body, model_schema

router = make_router(tags=["inbox"])

ID_BYTES = 32  # an item id is at most 19 digits; with quotes, a comma and spaces


class InboxItemOut(BaseModel):
    """One item as its reader sees it. `id` is the item's (shared by every recipient); `event_id` the event's."""

    id: str
    event_id: str
    type: str
    title: str
    body: str
    url: str | None
    icon: str | None
    category: str | None
    data: dict[str, Any] | None
    scope: str | None
    critical: bool
    occurred_at: datetime
    created_at: datetime
    seen: bool
    read: bool
    archived: bool

    @classmethod
    def of(cls, item: InboxItem) -> InboxItemOut:
        fields = {name: getattr(item, name) for name in cls.model_fields if name != "data"}
        return cls(data=dict(item.data) if item.data is not None else None, **fields)


class InboxPage(BaseModel):
    items: list[InboxItemOut]
    next_cursor: str | None = Field(
        description="pass it as `cursor` for the next (older) page; null: the last"
    )

    @classmethod
    def of(cls, page: Page) -> InboxPage:
        return cls(items=[InboxItemOut.of(item) for item in page.items], next_cursor=page.next_cursor)


class CountsOut(BaseModel):
    """Unseen and unread items (archived ones count as neither; a muted scope's only when critical)."""

    unseen: int
    unread: int
    by_category: dict[str, int] = Field(description="unread items per named category")

    @classmethod
    def of(cls, counts: Counts) -> CountsOut:
        return cls(unseen=counts.unseen, unread=counts.unread, by_category=counts.by_category)


class MarkIn(BaseModel):
    """Either the ids to mark, or `all: true` (everything up to the newest item, or up to `up_to`)."""

    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = None
    all: StrictBool = False
    up_to: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        None,
        description="with `all`: the newest item id the client has shown (items after it stay as they are)",
    )

    @model_validator(mode="after")
    def _one_of(self) -> MarkIn:
        if self.all == (self.ids is not None):
            raise ValueError('give either "ids": [...] or "all": true')
        if self.up_to is not None and not self.all:
            raise ValueError('"up_to" goes with "all": true')
        return self


class MarkOut(BaseModel):
    mark: str
    marked: int = Field(description="how many ids were marked (0 for `all`)")
    up_to: str | None = Field(
        description="for `all`: the newest item the mark covers (null: the inbox was empty)"
    )
    counts: CountsOut


class AdminInboxOut(InboxPage):
    user_id: str
    counts: CountsOut


Cursor = Annotated[str | None, Query(min_length=1, max_length=64, description="a page's next_cursor")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Category = Annotated[str | None, Query(pattern=CATEGORY_PATTERN, description="only this category")]


@router.get(
    "/v1/inbox",
    summary="The caller's inbox, newest first (keyset pages)",
    responses=answers(401, 422, 503),
)
async def list_inbox(
    hub: HubDep,
    user: UserDep,
    cursor: Cursor = None,
    limit: Limit = 20,
    unread: Annotated[bool, Query(description="only unread items")] = False,
    category: Category = None,
    archived: Annotated[bool, Query(description="only archived items (default: all but archived)")] = False,
) -> InboxPage:
    page = await hub.inbox.list(
        user, cursor=cursor, limit=limit, unread=unread, category=category, archived=archived
    )
    return InboxPage.of(page)


@router.get(
    "/v1/inbox/counts",
    summary="The caller's unseen and unread counts, by category",
    responses=answers(401, 422, 503),
)
async def inbox_counts(hub: HubDep, user: UserDep) -> CountsOut:
    return CountsOut.of(await hub.inbox.counts(user))


_MARK_ANSWERS = answers(400, 401, 404, 413, 415, 422, 503)
_MARK_BODY = json_body(model_schema(MarkIn), "`ids` to mark, or `all: true`")


async def _mark(request: Request, hub: Hub, user: Any, mark: Mark) -> MarkOut | Response:
    limit = 1024 + hub.settings.inbox_max_ids_per_request * ID_BYTES
    try:
        body = MarkIn.model_validate(await read_json(request, limit=limit))
    except ValidationError as exc:
        return validation_response(
            [{"field": ".".join(map(str, e["loc"])), "message": e["msg"].removeprefix("Value error, ")}
             for e in exc.errors()]
        )  # fmt: skip
    ids = "all" if body.all else (body.ids or [])
    result = await hub.inbox.mark(user, mark, ids, up_to=body.up_to)
    counts = await hub.inbox.counts(user)
    return MarkOut(mark=mark, marked=result.items, up_to=result.up_to, counts=CountsOut.of(counts))


@router.post(
    "/v1/inbox/read",
    summary="Mark items read (and seen): ids, or all",
    responses=_MARK_ANSWERS,
    openapi_extra=_MARK_BODY,
)
async def mark_read(request: Request, hub: HubDep, user: UserDep) -> Any:
    return await _mark(request, hub, user, "read")


@router.post(
    "/v1/inbox/seen",
    summary="Mark items seen (listed, not opened): ids, or all",
    responses=_MARK_ANSWERS,
    openapi_extra=_MARK_BODY,
)
async def mark_seen(request: Request, hub: HubDep, user: UserDep) -> Any:
    return await _mark(request, hub, user, "seen")


@router.post(
    "/v1/inbox/archive",
    summary="Archive items (they leave the default listing and the counts): ids, or all",
    responses=_MARK_ANSWERS,
    openapi_extra=_MARK_BODY,
)
async def mark_archived(request: Request, hub: HubDep, user: UserDep) -> Any:
    return await _mark(request, hub, user, "archive")


@router.get(
    "/v1/admin/inbox",
    summary="A user's inbox as a token with these roles and topics reads it (role admin)",
    responses=answers(401, 403, 422, 503),
)
async def admin_inbox(
    hub: HubDep,
    admin: AdminDep,
    user_id: Annotated[str, Query(min_length=1, max_length=256, pattern=r"^[^\x00]+$")],
    roles: Annotated[
        str | None, Query(max_length=4096, pattern=r"^[^\x00]*$", description="comma-separated")
    ] = None,
    topics: Annotated[
        str | None, Query(max_length=4096, pattern=r"^[^\x00]*$", description="comma-separated")
    ] = None,
    cursor: Cursor = None,
    limit: Limit = 20,
) -> AdminInboxOut:
    reader = hub.inbox.reader(
        user_id,
        roles=(r for r in (roles or "").split(",") if r),
        topics=(t for t in (topics or "").split(",") if t),
    )
    page = await hub.inbox.list(reader, cursor=cursor, limit=limit)
    counts = await hub.inbox.counts(reader)
    out = InboxPage.of(page)
    return AdminInboxOut(
        user_id=user_id, items=out.items, next_cursor=out.next_cursor, counts=CountsOut.of(counts)
    )
