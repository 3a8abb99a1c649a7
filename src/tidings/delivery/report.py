"""What a job's attempts leave behind for people: delivery-log rows and metrics, built once per job."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from tidings import metrics
from tidings.delivery.dispatch import Attempt
from tidings.delivery.log import DeliveryRecord
from tidings.delivery.queue import PushJob
from tidings.push.base import Outcome


def attempt_rows(job: PushJob, attempts: Sequence[Attempt], now: float) -> list[DeliveryRecord]:
    """One row per device attempted, all stamped with the job's time (one insert per job)."""
    return [
        DeliveryRecord(
            event_id=job.event_id,
            device_id=a.device.id,
            user_id=a.device.user_id,
            provider=a.device.provider,
            outcome=a.result.outcome.value,
            reason=a.result.reason,
            status=a.result.status,
            attempt=job.attempt,
            latency_ms=a.latency_ms,
            created_at=now,
        )
        for a in attempts
    ]


def nobody_row(job: PushJob, now: float) -> DeliveryRecord:
    """The row for a job that reached no device: "why didn't my phone buzz?" starts with "was it registered?"."""
    return DeliveryRecord(
        event_id=job.event_id,
        device_id=None,
        user_id=None,
        provider="-",
        outcome=Outcome.skipped.value,
        reason="no_active_devices" if job.device_ids is None else "devices_gone",
        status=None,
        attempt=job.attempt,
        latency_ms=None,
        created_at=now,
    )


def count(counters: Counter[str], attempts: Sequence[Attempt]) -> None:
    """The worker's own counters and the Prometheus metrics; counter updates once per label set per job."""
    by_label: Counter[tuple[str, str]] = Counter()
    for a in attempts:
        counters["send." + a.result.outcome.value] += 1
        by_label[(a.device.provider, a.result.outcome.value)] += 1
        if a.latency_ms is not None:
            metrics.push_latency_seconds.labels(a.device.provider).observe(a.latency_ms / 1000.0)
    for (provider, outcome), n in by_label.items():
        metrics.push_sent_total.labels(provider, outcome).inc(n)
