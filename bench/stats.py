"""Result records and the percentile arithmetic shared by scenarios and the report."""

from __future__ import annotations

from array import array
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(sorted_vals: list[int], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (µs in, ms out); NaN when empty."""
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, round(q / 100 * len(sorted_vals)) - 1))
    return sorted_vals[k] / 1000


@dataclass
class Latency:
    """Publish→receive latency summary in milliseconds."""

    p50: float
    p99: float
    max: float
    n: int

    @classmethod
    def of(cls, lat_us: array[int] | list[int]) -> Latency:
        s = sorted(lat_us)
        return cls(percentile(s, 50), percentile(s, 99), (s[-1] / 1000) if s else float("nan"), len(s))


@dataclass
class Step:
    """One point of a rate sweep."""

    scenario: str
    system: str
    clients: int
    offered_eps: float  # events/s asked of the publisher
    sent: int  # events actually published
    expected: int  # deliveries that should arrive
    received: int  # deliveries that did arrive (window + drain)
    seconds: float  # publishing window
    deliveries_per_s: float
    latency: Latency
    server_cpu_pct: float  # of one core, over the window + drain
    server_us_per_delivery: float
    gen_cpu_pct: float  # generators + publisher, of one core
    other_cpu_pct: float  # everything else on the host (foreign load), of one core
    lost_connections: int
    publish_errors: int

    @property
    def complete(self) -> float:
        return self.received / self.expected if self.expected else 0.0

    def ok(self, p99_ms: float) -> bool:
        return self.complete >= 0.99 and self.latency.p99 <= p99_ms and self.publish_errors == 0


@dataclass
class SystemResult:
    """Everything measured for one system in one run."""

    system: str
    connect: dict[str, dict[str, float]] = field(default_factory=dict)  # scenario -> {clients, seconds, rate}
    memory: dict[str, float] = field(default_factory=dict)  # rss_before, rss_after, clients, kb_per_conn
    steps: list[Step] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    def best(self, scenario: str, p99_ms: float) -> Step | None:
        """The highest-throughput step that met the latency bound and delivered everything."""
        ok = [s for s in self.steps if s.scenario == scenario and s.ok(p99_ms)]
        return max(ok, key=lambda s: s.deliveries_per_s) if ok else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
