"""OTLP export: with the standard OTEL_* variables set, the hub's metrics reach an OTLP/HTTP receiver."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from support import InProcessServer
from tidings import Hub


async def test_metrics_are_pushed_over_otlp_when_configured(
    make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    received: list[ExportMetricsServiceRequest] = []

    async def collect(request: Request) -> Response:
        message = ExportMetricsServiceRequest()
        message.ParseFromString(await request.body())
        received.append(message)
        return Response(b"", media_type="application/x-protobuf")

    receiver = Starlette(routes=[Route("/v1/metrics", collect, methods=["POST"])])
    async with InProcessServer(receiver) as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
        monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "200")
        hub = Hub(make_settings())
        async with hub.lifespan():
            await hub.publish("order.created", {}, to={"roles": ["admin"]})

            def names() -> set[str]:
                return {
                    metric.name
                    for request in received
                    for resource in request.resource_metrics
                    for scope in resource.scope_metrics
                    for metric in scope.metrics
                }

            async with asyncio.timeout(10):
                while "events_published_total" not in names():
                    await asyncio.sleep(0.05)
    assert {"events_published_total", "push_queue_depth", "event_delivery_latency_seconds_count"} <= names()
    attributes = {
        (a.key, a.value.string_value)
        for request in received
        for resource in request.resource_metrics
        for a in resource.resource.attributes
    }
    assert ("service.name", "tidings") in attributes
