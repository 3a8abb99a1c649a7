"""What the OpenAPI document says: the shared error body, each route's error answers, and the shapes of the
bodies the routes read by hand (FastAPI cannot see those, since they are parsed after authentication).

The fuzz test (tests/api/test_fuzz.py) holds the routes to this document: an answer with an undocumented status or
a body of another shape fails it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Security
from pydantic import BaseModel, Field
from starlette.responses import Response

from ..errors import ApiError
from ..events import EventIn
from .deps import USER


class FieldError(BaseModel):
    field: str = Field(description="where, e.g. `to.users[0]` or `[3].type`")
    message: str


class ErrorBody(BaseModel):
    """Every error tidings answers (4xx and 5xx) has this shape."""

    error: str = Field(description="a machine-readable code: validation_error, invalid_token, forbidden, ...")
    message: str = Field(description="what went wrong, for a human")
    field: str | None = Field(description="the offending field or parameter, when there is one")
    errors: list[FieldError] | None = Field(None, description="every bad field (validation errors only)")


ERROR_DESCRIPTIONS = {
    400: "Malformed JSON, a key given twice in one object, or a malformed parameter",
    401: "Missing, malformed, expired or revoked credential (`WWW-Authenticate: Bearer`)",
    403: "The credential is valid but does not allow this (a role, a topic)",
    404: "No such resource, or not yours",
    413: "The body (or the batch) is too large",
    415: "The body is not `application/json`",
    422: "Validation failed: `field` names the first bad field, `errors` lists them all",
    429: "Too many requests; retry after `Retry-After` seconds",
    503: "The bus, the database or the push queue is unavailable, or the server is restarting (`Retry-After`)",
}


def answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: each error status it can answer, with the shared error body."""
    return {status: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[status]} for status in statuses}


def inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """pydantic's `#/$defs/X` refs do not resolve inside an OpenAPI document; our models nest without cycles."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [inline_refs(v, defs) for v in node]
    return node


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    inlined: dict[str, Any] = inline_refs(schema, schema.get("$defs", {}))
    return inlined


def json_body(schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    """`openapi_extra=` for a route that reads its JSON body by hand."""
    body: dict[str, Any] = {"required": True, "content": {"application/json": {"schema": schema}}}
    if description:
        body["description"] = description
    return {"requestBody": body}


def _event_schema() -> dict[str, Any]:
    event = model_schema(EventIn)
    push = event["properties"]["push"]
    push["anyOf"].insert(1, {"type": "string", "enum": ["silent", "alert"]})  # the shorthand PushSpec accepts
    return event


EVENT_SCHEMA = _event_schema()
PUBLISH_BODY = json_body(
    {"oneOf": [EVENT_SCHEMA, {"type": "array", "items": EVENT_SCHEMA, "minItems": 1}]},
    "One event, or a list of at most TIDINGS_MAX_BATCH events (one bad event refuses the whole batch)",
)


_STREAM_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
        "description": "`retry:` and `:ok`, then `id:`/`event:`/`data:` frames until the stream ends",
    },
    **answers(400, 401, 403, 503),
}
STREAMS = {
    "/v1/events": "The caller's events: to its user id, its roles, the topics it asks for, and broadcasts",
    "/v1/admin/events": "The same stream for the role `admin` (one connection per user by default)",
    "/v1/admin/feed": "The dashboard's feed (role `admin`): every event's summary, push attempts, stats; no ids",
}


def _query(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": description,
    }


# Declared here rather than as FastAPI parameters: the streams answer a bad one with 400, never FastAPI's 422.
_STREAM_PARAMETERS = [
    _query("topics", "comma-separated, at most 100; each must be granted by the token's topics claim"),
    _query("last_event_id", "resume after this event id (as the Last-Event-ID header does)"),
    _query("token", "the user's JWT, for EventSource, which cannot send headers"),
    _query("ticket", "a single-use ticket from POST /v1/stream-tickets, in place of the JWT"),
    {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}},
]


async def _stream(_: Annotated[None, Security(USER)]) -> Response:
    # Never reached: the stream endpoints are plain ASGI routes registered before these (api/stream.py says why).
    raise ApiError(404, "not_found", "streams are served by the stream endpoint")


def stream_docs() -> APIRouter:
    """Documentation of the SSE endpoints, which FastAPI cannot see (they are not FastAPI routes)."""
    router = APIRouter(tags=["streams"])
    for path, summary in STREAMS.items():
        router.add_api_route(
            path,
            _stream,
            methods=["GET"],
            summary=summary,
            response_class=Response,
            responses=_STREAM_ANSWERS,
            openapi_extra={"parameters": _STREAM_PARAMETERS},
        )
    return router
