"""The caller's own delivery preferences: `GET/PUT/PATCH /v1/preferences`, `PUT/DELETE
/v1/preferences/scopes/{scope}` (a scope may contain `/`: `{scope:path}`).

Bodies are the documents of `tidings.policy.preferences` (its docstring is the reference); PATCH is a JSON
Merge Patch (RFC 7396, `application/merge-patch+json` or plain JSON). Every answer is the whole document as
stored (`{}` when nothing is set). Bad input is a 422 naming the field (`quiet_hours.timezone`); deleting a
scope that has no settings is a 404. A change reaches the user's open streams on every process at once and
makes their held pushes due for a new decision (`hub.preferences`).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..errors import ApiError
from ..policy.preferences import Preferences, ScopePrefs, parse_preferences, parse_scope, valid_scope
from .body import read_json
from .deps import HubDep, UserDep
from .errors import make_router
from .openapi import answers, json_body, model_schema

router = make_router(tags=["preferences"])

MAX_BODY_BYTES = 65_536  # a whole document is ~32 KB at its scope budget


def _document(prefs: Preferences | None) -> dict[str, Any]:
    return prefs.document() if prefs is not None else {}


_DOCUMENT: dict[int | str, dict[str, Any]] = {
    200: {"description": "The whole document as stored (`{}` when nothing is set)"}
}
_PATCH = {
    "requestBody": {
        "required": True,
        "description": "A JSON Merge Patch (RFC 7396): `null` clears a field, objects merge, arrays replace",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
        },
    }
}
_WRITE_ERRORS = answers(400, 401, 413, 415, 422, 503)


@router.get(
    "/v1/preferences",
    summary="The caller's delivery preferences",
    responses={**_DOCUMENT, **answers(401, 503)},
)
async def get_preferences(hub: HubDep, user: UserDep) -> dict[str, Any]:
    return _document(await hub.preferences.get(user.user_id))


@router.put(
    "/v1/preferences",
    summary="Replace the caller's delivery preferences",
    openapi_extra=json_body(model_schema(Preferences)),
    responses={**_DOCUMENT, **_WRITE_ERRORS},
)
async def put_preferences(request: Request, hub: HubDep, user: UserDep) -> dict[str, Any]:
    prefs = parse_preferences(await read_json(request, limit=MAX_BODY_BYTES))
    return _document(await hub.preferences.put(user.user_id, prefs))


@router.patch(
    "/v1/preferences",
    summary="Change the caller's delivery preferences (JSON Merge Patch)",
    openapi_extra=_PATCH,
    responses={**_DOCUMENT, **_WRITE_ERRORS},
)
async def patch_preferences(request: Request, hub: HubDep, user: UserDep) -> dict[str, Any]:
    patch = await read_json(request, limit=MAX_BODY_BYTES)
    return _document(await hub.preferences.patch(user.user_id, patch))


@router.put(
    "/v1/preferences/scopes/{scope:path}",
    summary="Replace one scope's settings",
    openapi_extra=json_body(model_schema(ScopePrefs)),
    responses={**_DOCUMENT, **_WRITE_ERRORS},
)
async def put_scope(scope: str, request: Request, hub: HubDep, user: UserDep) -> dict[str, Any]:
    settings = parse_scope(await read_json(request, limit=MAX_BODY_BYTES))
    return _document(await hub.preferences.put_scope(user.user_id, scope, settings))


@router.delete(
    "/v1/preferences/scopes/{scope:path}",
    status_code=204,
    summary="Clear one scope's settings",
    responses=answers(401, 404, 422, 503),
)
async def delete_scope(scope: str, hub: HubDep, user: UserDep) -> Response:
    if not valid_scope(scope) or not await hub.preferences.delete_scope(user.user_id, scope):
        raise ApiError(404, "not_found", f"no settings for scope {scope[:128]!r}", field="scope")
    return Response(status_code=204)
