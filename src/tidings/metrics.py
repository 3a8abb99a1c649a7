"""Every metric tidings exports, declared in one place, and the /metrics rendering.

With several worker processes, prometheus_client's multiprocess mode is used: `tidings serve --workers N` sets
PROMETHEUS_MULTIPROC_DIR before the workers start, and /metrics aggregates every process's files.
Updates happen once per event (with counts), never once per recipient.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

if TYPE_CHECKING:
    from .wire import Envelope

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

sse_connections_active = Gauge(
    "sse_connections_active", "Open SSE streams", ["role"], multiprocess_mode="livesum"
)
sse_connection_duration_seconds = Histogram(
    "sse_connection_duration_seconds",
    "How long SSE streams stayed open",
    buckets=(1, 10, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400),
)
sse_disconnects_total = Counter("sse_disconnects_total", "SSE streams closed, by reason", ["reason"])
events_published_total = Counter("events_published_total", "Events accepted by publish", ["event_type"])
admin_events_emitted_total = Counter(
    "admin_events_emitted_total", "Events routed to the admin role's streams", ["event_type"]
)
events_delivered_total = Counter("events_delivered_total", "Event deliveries, by transport", ["transport"])
event_delivery_latency_seconds = Histogram(
    "event_delivery_latency_seconds",
    "Publish (id assigned) to handed to the stream writers",
    buckets=_LATENCY_BUCKETS,
)
push_sent_total = Counter(
    "push_sent_total", "Push attempts, by provider and outcome", ["provider", "outcome"]
)
push_latency_seconds = Histogram(
    "push_latency_seconds", "Provider round trip", ["provider"], buckets=_LATENCY_BUCKETS
)
push_skipped_total = Counter(
    "push_skipped_total",
    "Pushes not sent to a user by delivery policy (presence, mute, quiet hours, debounce), by reason",
    ["reason"],
)
push_queue_depth = Gauge("push_queue_depth", "Push jobs waiting", multiprocess_mode="livemax")
devices_active = Gauge(
    "devices_active", "Active devices, by provider", ["provider"], multiprocess_mode="livemax"
)

_sse_delivered = events_delivered_total.labels("sse")


def observe_routed(envelope: Envelope, recipients: int) -> None:
    """Account for one event routed to `recipients` local streams."""
    if recipients:
        _sse_delivered.inc(recipients)
    ms = int(envelope.id.partition("-")[0])
    event_delivery_latency_seconds.observe(max(0.0, envelope.received_at - ms / 1000))
    if "r:admin" in envelope.channels:
        admin_events_emitted_total.labels(envelope.type).inc()


def stream_opened(role: str) -> float:
    sse_connections_active.labels(role).inc()
    return time.monotonic()


def stream_closed(role: str, reason: str, opened: float) -> None:
    sse_connections_active.labels(role).dec()
    sse_disconnects_total.labels(reason).inc()
    sse_connection_duration_seconds.observe(time.monotonic() - opened)


def render() -> tuple[bytes, str]:
    """The exposition text of this process, or of all processes in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
