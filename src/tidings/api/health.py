"""Liveness, readiness and metrics for load balancers, orchestrators and Prometheus."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Security
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import metrics
from ..auth import bearer_token
from ..errors import AuthError
from .deps import METRICS, HubDep
from .errors import make_router
from .openapi import answers

router = make_router(tags=["health"])


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, bool]


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Broker, database and worker are usable",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready: `checks` names what failed"}},
)
async def readyz(hub: HubDep) -> JSONResponse:
    checks = await hub.readiness()
    ready = all(checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


_METRICS_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"},
    **answers(401),
}


@router.get(
    "/metrics",
    summary="Prometheus metrics (with TIDINGS_METRICS_TOKEN set: `Authorization: Bearer <token>`)",
    response_class=Response,
    responses=_METRICS_ANSWERS,
)
async def prometheus(request: Request, hub: HubDep, _: Annotated[None, Security(METRICS)]) -> Response:
    expected = hub.settings.metrics_token
    if expected:
        given = bearer_token(request.headers.get("authorization")) or ""
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise AuthError("send Authorization: Bearer <TIDINGS_METRICS_TOKEN>", "unauthorized")
    if hub.runtime is not None:
        await hub.runtime.refresh_gauges()
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
