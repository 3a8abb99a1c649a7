"""Errors at the HTTP boundary: our exceptions become HTTP answers here, and only here.

Every 4xx/5xx tidings answers is JSON `{"error": code, "message": ..., "field": ...}`. The core raises its own
errors (`tidings.errors`); `as_api_error` maps each to a status in one table. Routes are built with
`TidingsRoute`, which renders those errors itself, so the hub's router behaves the same whether the host app
registers our exception handlers (`mount`) or only includes the router.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import (
    ApiError,
    AuthError,
    BusUnavailable,
    InboxNotStored,
    InvalidInput,
    NotFound,
    NotStarted,
    PolicyViolation,
    PushNotQueued,
    StoreUnavailable,
    TidingsError,
    validation_details,
)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}
RETRY_SOON = {"Retry-After": "1"}
BEARER = {"WWW-Authenticate": "Bearer"}


def as_api_error(exc: TidingsError) -> ApiError:
    """The HTTP answer for one of our errors."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, AuthError):
        if exc.code == "forbidden":
            return ApiError(403, exc.code, str(exc))
        return ApiError(401, exc.code, str(exc), headers=BEARER)
    if isinstance(exc, InvalidInput):
        return ApiError(422, "validation_error", str(exc), exc.field, errors=exc.errors)
    if isinstance(exc, PolicyViolation):
        details = [{"field": exc.field, "message": exc.message}]
        return ApiError(422, "validation_error", str(exc), exc.field, errors=details)
    if isinstance(exc, PushNotQueued):
        return ApiError(503, "push_unavailable", str(exc), headers=RETRY_SOON)
    if isinstance(exc, BusUnavailable):
        return ApiError(503, "unavailable", "the event bus is unavailable; retry", headers=RETRY_SOON)
    if isinstance(exc, NotFound):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, InboxNotStored):
        return ApiError(503, "inbox_unavailable", str(exc), headers=RETRY_SOON)
    if isinstance(exc, StoreUnavailable):
        return ApiError(503, "unavailable", "the database is busy or unreachable; retry", headers=RETRY_SOON)
    if isinstance(exc, NotStarted):
        return ApiError(503, "not_started", str(exc), headers=RETRY_SOON)
    return ApiError(500, "internal_error", "an internal error occurred")


def error_response(exc: TidingsError) -> JSONResponse:
    error = as_api_error(exc)
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def validation_response(details: list[dict[str, str]]) -> JSONResponse:
    """A 422 naming the first bad field, with all of them in `errors`."""
    first = details[0] if details else {"field": "", "message": "invalid request"}
    error = ApiError(
        422,
        "validation_error",
        f"{first['field']}: {first['message']}" if first["field"] else first["message"],
        first["field"] or None,
        errors=details,
    )
    return JSONResponse(error.body(), status_code=422)


async def tidings_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TidingsError)
    return error_response(exc)


async def request_validation_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return validation_response(validation_details(exc.errors()))


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _STATUS_CODES.get(exc.status_code, "error")
    return JSONResponse(
        {"error": code, "message": str(exc.detail), "field": None},
        status_code=exc.status_code,
        headers=exc.headers,
    )


class TidingsRoute(APIRoute):
    """An APIRoute that renders our errors itself (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except TidingsError as exc:
                return error_response(exc)
            except RequestValidationError as exc:
                return validation_response(validation_details(exc.errors()))

        return handle


def make_router(**kwargs: Any) -> APIRouter:
    return APIRouter(route_class=TidingsRoute, **kwargs)
