"""Liveness, readiness and metrics for load balancers, orchestrators and Prometheus."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from .. import metrics
from .deps import HubDep
from .errors import make_router

router = make_router(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Broker, database and worker are usable")
async def readyz(hub: HubDep) -> JSONResponse:
    checks = await hub.readiness()
    ready = all(checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics")
async def prometheus(hub: HubDep) -> Response:
    if hub.runtime is not None:
        await hub.runtime.refresh_gauges()
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
