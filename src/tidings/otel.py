"""OpenTelemetry export: the Prometheus metrics of metrics.py, pushed over OTLP when OTEL_* is configured.

The metrics are declared once, for Prometheus (which also serves multiprocess deployments); this bridge observes
them on each export with OpenTelemetry observable instruments. Counters and gauges map one to one; a histogram is
exported as its `_count` and `_sum` counters (OTLP has no observable histogram). The exporter itself reads the
standard variables (endpoint, headers, OTEL_METRIC_EXPORT_INTERVAL, OTEL_SERVICE_NAME, ...).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import REGISTRY

log = logging.getLogger("tidings")

OUR_METRICS = (
    "sse_connections_active", "sse_connection_duration_seconds", "sse_disconnects", "events_published",
    "admin_events_emitted", "events_delivered", "event_delivery_latency_seconds", "push_sent",
    "push_latency_seconds", "push_queue_depth", "devices_active",
)  # fmt: skip


class OtlpBridge:
    """Holds the MeterProvider; `shutdown()` flushes the last export."""

    def __init__(self, provider: Any) -> None:
        self._provider = provider

    def shutdown(self) -> None:
        self._provider.shutdown()


def start_otlp_export(service_name: str = "tidings") -> OtlpBridge | None:
    """Begin periodic OTLP export; None (with an error logged) if the SDK is not installed."""
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    except ImportError:
        log.error(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed: pip install 'tidings[otel]'"
        )
        return None
    reader = PeriodicExportingMetricReader(OTLPMetricExporter())
    resource = Resource.create({SERVICE_NAME: service_name})  # OTEL_SERVICE_NAME, if set, wins
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = provider.get_meter("tidings")
    for family in _our_families():
        _observe(meter, family.name, family.type, family.documentation)
    return OtlpBridge(provider)


def _our_families() -> Iterable[Any]:
    return [f for f in REGISTRY.collect() if f.name in OUR_METRICS]


def _observe(meter: Any, name: str, kind: str, description: str) -> None:
    if kind == "counter":
        meter.create_observable_counter(f"{name}_total", [_samples(name, "_total")], description=description)
    elif kind == "gauge":
        meter.create_observable_gauge(name, [_samples(name, "")], description=description)
    elif kind == "histogram":
        for suffix in ("_count", "_sum"):
            meter.create_observable_counter(
                f"{name}{suffix}", [_samples(name, suffix)], description=description
            )


def _samples(family_name: str, suffix: str) -> Callable[[Any], Iterable[Any]]:
    from opentelemetry.metrics import Observation

    def callback(options: Any) -> Iterable[Any]:
        for family in _our_families():
            if family.name == family_name:
                for sample in family.samples:
                    if sample.name == family_name + suffix:
                        yield Observation(sample.value, dict(sample.labels))

    return callback
