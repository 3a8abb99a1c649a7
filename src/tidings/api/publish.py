"""`POST /v1/publish`: one event or a batch, from any backend holding the publish key or a publisher JWT."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from ..errors import ApiError
from .deps import HubDep, PublisherDep
from .errors import make_router

router = make_router(tags=["publish"])


@router.post("/v1/publish", status_code=202, summary="Publish one event or a batch")
async def publish(request: Request, hub: HubDep, publisher: PublisherDep) -> dict[str, list[str]]:
    body = await read_json(request, limit=hub.publish_body_limit)
    batch = body if isinstance(body, list) else [body]
    if not batch:
        raise ApiError(422, "validation_error", "the batch is empty", field="")
    if len(batch) > hub.settings.max_batch:
        raise ApiError(413, "batch_too_large", f"at most {hub.settings.max_batch} events per request")
    events = hub.validate_events(batch, indexed=isinstance(body, list))
    return {"ids": await hub.publish_events(events)}


async def read_json(request: Request, *, limit: int) -> Any:
    """The request's JSON body, refusing more than `limit` bytes without reading them all."""
    content_type = request.headers.get("content-type", "application/json")
    if "json" not in content_type:
        raise ApiError(415, "unsupported_media_type", "send Content-Type: application/json")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", f"the body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "too_large", f"the body is larger than {limit} bytes")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from exc
