"""The dashboard's JSON snapshot of the counters /metrics exports, read from the same prometheus registry.

Counters are totals since start (aggregated over every process in multiprocess mode, as /metrics is); the
dashboard computes rates from two snapshots, so nothing here keeps a window. Latency quantiles are estimated from
the histogram's buckets the way Prometheus' `histogram_quantile` does (linear within a bucket).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.metrics_core import Metric

from . import __version__
from .errors import BusUnavailable

if TYPE_CHECKING:
    from .hub import Hub

PUSH_PROVIDERS = ("apns", "fcm", "webpush")


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def _samples(metrics: Iterable[Metric]) -> dict[str, list[tuple[dict[str, str], float]]]:
    by_name: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for metric in metrics:
        for sample in metric.samples:
            by_name[sample.name].append((sample.labels, sample.value))
    return by_name


def _quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """`buckets` = [(upper bound, cumulative count)] sorted by bound, +Inf last; None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound is all we know
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def counters() -> dict[str, Any]:
    """Connections, disconnects, events and push outcomes from the registry (no I/O)."""
    samples = _samples(_registry().collect())
    by_role: dict[str, int] = {}
    for labels, value in samples.get("sse_connections_active", []):
        if value:
            by_role[labels.get("role", "")] = by_role.get(labels.get("role", ""), 0) + int(value)
    disconnects: dict[str, int] = {}
    for labels, value in samples.get("sse_disconnects_total", []):
        disconnects[labels["reason"]] = disconnects.get(labels["reason"], 0) + int(value)
    by_provider: dict[str, dict[str, int]] = {}
    for labels, value in samples.get("push_sent_total", []):
        outcomes = by_provider.setdefault(labels["provider"], {})
        outcomes[labels["outcome"]] = outcomes.get(labels["outcome"], 0) + int(value)
    delivered = sum(
        int(v) for labels, v in samples.get("events_delivered_total", []) if labels["transport"] == "sse"
    )
    buckets: dict[float, float] = defaultdict(float)
    for labels, value in samples.get("event_delivery_latency_seconds_bucket", []):
        buckets[float(labels["le"])] += value
    ordered = sorted(buckets.items())
    p50, p99 = _quantile(0.5, ordered), _quantile(0.99, ordered)
    active = {labels["provider"]: int(v) for labels, v in samples.get("devices_active", [])}
    return {
        "connections": {"total": sum(by_role.values()), "by_role": by_role},
        "disconnects": disconnects,
        "events": {
            "published_total": sum(int(v) for _, v in samples.get("events_published_total", [])),
            "delivered_sse_total": delivered,
            "latency_p50_ms": None if p50 is None else round(p50 * 1000, 3),
            "latency_p99_ms": None if p99 is None else round(p99 * 1000, 3),
        },
        "push": {"by_provider": by_provider},
        "devices": {"active_by_provider": {p: active.get(p, 0) for p in PUSH_PROVIDERS}},
    }


async def snapshot(hub: Hub) -> dict[str, Any]:
    """`GET /v1/admin/stats` and the feed's `stats` frame: the counters, the queue depth, the providers."""
    out: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "version": __version__,
        "environment": hub.settings.env.value,
        **counters(),
    }
    runtime = hub.runtime
    depth: int | None = None
    configured: dict[str, bool] = {}
    if runtime is not None:
        await runtime.refresh_gauges()  # active devices: one query a minute at most, as for /metrics
        try:
            depth = await runtime.queue.depth()
        except BusUnavailable:
            depth = None  # unknown for now; /readyz says why
        configured = {name: provider.configured for name, provider in runtime.providers.items()}
    out["push"] = {"queue_depth": depth, "configured": configured, **out["push"]}
    return out
