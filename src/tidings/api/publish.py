"""`POST /v1/publish`: one event or a batch, from any backend holding the publish key or a publisher JWT."""

from __future__ import annotations

from pydantic import BaseModel, Field
from starlette.requests import Request

from ..errors import ApiError
from .body import read_json
from .deps import HubDep, PublisherDep
from .errors import make_router
from .openapi import PUBLISH_BODY, answers

router = make_router(tags=["publish"])


class PublishResult(BaseModel):
    ids: list[str] = Field(description="the ids assigned, in the order of the events")


@router.post(
    "/v1/publish",
    status_code=202,
    summary="Publish one event or a batch",
    openapi_extra=PUBLISH_BODY,
    responses=answers(400, 401, 403, 413, 415, 422, 503),
)
async def publish(request: Request, hub: HubDep, publisher: PublisherDep) -> PublishResult:
    body = await read_json(request, limit=hub.publish_body_limit)  # read by hand, after authentication
    batch = body if isinstance(body, list) else [body]
    if not batch:
        raise ApiError(422, "validation_error", "the batch is empty", field="")
    if len(batch) > hub.settings.max_batch:
        raise ApiError(413, "batch_too_large", f"at most {hub.settings.max_batch} events per request")
    events = hub.validate_events(batch, indexed=isinstance(body, list))
    return PublishResult(ids=await hub.publish_events(events))
