"""Error translation at the HTTP boundary: every 4xx is JSON `{"error", "message", "field"}`, never a 500.

Routes are built with `TidingsRoute`, which answers ApiError and request-validation errors itself, so the hub's
router behaves the same whether the host app registers our exception handlers (`hub.mount`) or only calls
`app.include_router(hub.router)`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import ApiError

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


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def field_path(loc: Sequence[int | str]) -> str:
    """`("body", "to", "users", 0)` → `to.users[0]`: the name a publisher recognises."""
    parts = [p for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_errors(errors: Sequence[Any], prefix: str = "") -> list[dict[str, str]]:
    details = []
    for err in errors:
        path = field_path(tuple(err.get("loc", ())))
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            message = "unknown field"
        details.append({"field": prefix + path if path else prefix.rstrip("."), "message": message})
    return details


def validation_response(details: list[dict[str, str]]) -> JSONResponse:
    first = details[0] if details else {"field": "", "message": "invalid request"}
    body = {
        "error": "validation_error",
        "message": f"{first['field']}: {first['message']}" if first["field"] else first["message"],
        "field": first["field"] or None,
        "errors": details,
    }
    return JSONResponse(body, status_code=422)


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def request_validation_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return validation_response(validation_errors(exc.errors()))


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
            except ApiError as exc:
                return error_response(exc)
            except RequestValidationError as exc:
                return validation_response(validation_errors(exc.errors()))

        return handle


def make_router(**kwargs: Any) -> APIRouter:
    return APIRouter(route_class=TidingsRoute, **kwargs)
