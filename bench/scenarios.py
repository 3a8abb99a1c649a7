"""The scenarios of issue 6 §3, each a function of (system, profile) returning measured records.

Why sweeps and fresh servers: the figure that matters is the highest delivery rate a system sustains within a
latency bound, which only a rate sweep finds; and memory per connection is only meaningful against a freshly
started process, so the 10,000-client phase starts its own server and reads RSS before and after connecting. A
sweep stops at the first step that clearly fails (p99 far past the bound or deliveries falling behind), which
keeps a full run of three systems under ten minutes.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench import launcher
from bench.generator import GeneratorPool
from bench.protocol import TOPIC
from bench.publisher import Plan, Publisher
from bench.stats import Latency, Step, SystemResult

SERVER_CPU = 0
GEN_CPU = 1


@dataclass(frozen=True)
class Profile:
    """How big and how long: ``quick`` validates the machinery in about a minute, ``full`` is the real run."""

    name: str
    small_n: int
    large_n: int
    step_s: float
    drain_s: float
    small_rates: tuple[float, ...]  # events/s, fan-out to small_n clients
    large_rates: tuple[float, ...]  # events/s, fan-out to large_n clients
    targeted_rates: tuple[float, ...]  # events/s, each to one random user of large_n
    scaleout_n: int
    scaleout_rate: float
    gen_procs: int = 2

    def __post_init__(self) -> None:
        assert self.gen_procs >= 2, "scale-out puts worker i on server i % 2"


QUICK = Profile("quick", 200, 1000, 1.5, 1.5, (10, 50, 200), (2, 10, 40), (200, 1000, 5000), 200, 10)
# Where a sweep stops exploring (a step "keeps up" when >= 99 % arrives within this p99); the report applies the
# issue's bounds (50 / 100 ms) to the recorded steps, so the sweep can show the knee and the plateau beyond them.
STOP_MS = {"fanout-small": 200.0, "fanout-large": 2000.0, "targeted": 200.0}
FULL = Profile(
    "full",
    1000,
    10_000,
    3.0,
    2.0,
    (2, 5, 10, 20, 40, 70, 100, 150, 200, 300, 500, 700, 1000),
    (1, 2, 4, 7, 10, 15, 20, 30, 50),
    (1000, 2000, 5000, 10_000, 20_000, 30_000, 40_000, 60_000),
    1000,
    20,
)


def host_busy_seconds() -> float:
    """CPU seconds the whole host spent busy, all cores.

    What is left after the server and the generator is foreign load: on a shared 2-core machine other people's
    test runs can be the biggest error in these figures, so every step reports it.
    """
    t = psutil.cpu_times()  # user/nice/system only: irq and softirq time belongs to no process
    return float(t.user + t.nice + t.system)


def _drop_redis_keys(url: str, prefix: str) -> None:
    """Remove what the scale-out run left in Redis (history streams under this run's private prefix)."""
    try:
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    except Exception as exc:  # cleanup must not fail the run
        print(f"warning: could not clean Redis keys {prefix}*: {exc!r}", flush=True)


class Runner:
    """Owns the generator pool and the publisher for the whole run; drives one system at a time."""

    def __init__(self, profile: Profile, run_dir: Path, log: Callable[[str], None] = print) -> None:
        self.profile = profile
        self.run_dir = run_dir
        self.log = log
        self.pool = GeneratorPool(profile.gen_procs, GEN_CPU)
        self.pub = Publisher(GEN_CPU)

    def close(self) -> None:
        self.pool.shutdown()
        self.pub.shutdown()

    # -- building blocks -------------------------------------------------------------------------------------

    def _warm(self, servers: list[launcher.Server]) -> None:
        """Open and close a few streams so lazy imports and first-use caches do not count as per-conn."""
        self.pool.connect([s.addr for s in servers], TOPIC, [f"warm{i}" for i in range(8)])
        self.pool.close()

    def _connect(self, servers: list[launcher.Server], n: int) -> dict[str, float]:
        c = self.pool.connect([s.addr for s in servers], TOPIC, [f"u{i}" for i in range(n)])
        if c["failed"]:
            self.log(f"    ! {c['failed']} of {n} connects failed: {c['errors']}")
        out = {"clients": float(c["ok"]), "seconds": c["seconds"], "rate": c["ok"] / max(c["seconds"], 1e-9)}
        self.log(f"    connected {c['ok']}/{n} in {c['seconds']:.2f}s ({out['rate']:.0f}/s)")
        return out

    def step(
        self,
        servers: list[launcher.Server],
        system: str,
        scenario: str,
        clients: int,
        rate: float,
        *,
        targeted: bool,
    ) -> tuple[Step, list[array[int]]]:
        """Publish at ``rate`` for the profile's window, wait for the drain, and summarise."""
        p = self.profile
        self.pool.start()
        cpu0 = sum(s.cpu_seconds() for s in servers)
        busy0 = host_busy_seconds()
        own0 = time.process_time()
        t0 = time.monotonic()
        plan = Plan(
            servers[0].addr[0],
            servers[0].port,
            rate,
            p.step_s,
            topic=None if targeted else TOPIC,
            n_users=clients if targeted else 0,
        )
        rep = self.pub.publish(plan)
        expected = rep["sent"] * (1 if targeted else clients)
        deadline = time.monotonic() + p.drain_s
        while time.monotonic() < deadline and self.pool.frames() < expected:
            time.sleep(0.02)
        wall = time.monotonic() - t0
        cpu = sum(s.cpu_seconds() for s in servers) - cpu0
        busy = host_busy_seconds() - busy0 - (time.process_time() - own0)  # minus this coordinator
        sample = self.pool.stop()
        received = sample.frames
        st = Step(
            scenario=scenario,
            system=system,
            clients=clients,
            offered_eps=rate,
            sent=rep["sent"],
            expected=expected,
            received=received,
            seconds=rep["seconds"],
            deliveries_per_s=received / wall,
            latency=Latency.of(sample.lat_us),
            server_cpu_pct=100 * cpu / wall,
            server_us_per_delivery=1e6 * cpu / max(received, 1),
            gen_cpu_pct=100 * (sample.gen_cpu_s + rep["cpu_s"]) / wall,
            other_cpu_pct=max(0.0, 100 * (busy - cpu - sample.gen_cpu_s - rep["cpu_s"]) / wall),
            lost_connections=sample.lost,
            publish_errors=rep["errors"],
        )
        lat = st.latency
        self.log(
            f"    {scenario:<14} {rate:>7g} ev/s → {st.deliveries_per_s:>9.0f} del/s "
            f"({100 * st.complete:5.1f}%)  p50 {lat.p50:7.1f}  p99 {lat.p99:7.1f}  max {lat.max:7.1f} ms  "
            f"server {st.server_cpu_pct:3.0f}% ({st.server_us_per_delivery:.1f} µs/del)  "
            f"gen {st.gen_cpu_pct:3.0f}%  other {st.other_cpu_pct:3.0f}%"
        )
        return st, [a for _, a in sample.per_worker]

    def sweep(
        self,
        servers: list[launcher.Server],
        res: SystemResult,
        scenario: str,
        clients: int,
        rates: tuple[float, ...],
        *,
        targeted: bool = False,
    ) -> None:
        """Raise the rate until the system falls behind or stops gaining; every step is kept for the plot.

        Stops after two steps that do not keep up (or one that is far off), or after two steps whose achieved
        rate is not 10 % above the best so far (saturated: the publisher is being held back by the server).
        """
        stop_ms = STOP_MS[scenario]
        failures = plateau = 0
        best = 0.0
        for rate in rates:
            st, _ = self.step(servers, res.system, scenario, clients, rate, targeted=targeted)
            res.steps.append(st)
            if not all(s.alive() for s in servers):
                raise RuntimeError(f"{res.system} died during {scenario}:\n{servers[0].log_tail()}")
            if not st.ok(stop_ms):
                failures += 1
                if failures >= 2 or st.latency.p99 > 4 * stop_ms or st.complete < 0.9:
                    break
            plateau = plateau + 1 if st.deliveries_per_s < 1.1 * best else 0
            if plateau >= 2:
                break
            best = max(best, st.deliveries_per_s)
            time.sleep(0.3)

    # -- scenarios -------------------------------------------------------------------------------------------

    def run_system(self, system: str) -> SystemResult:
        """Fan-out at small_n; then, on a fresh server, memory, fan-out and targeted at large_n."""
        p = self.profile
        res = SystemResult(system)
        self.log(f"== {system}")
        srv = launcher.start(system, SERVER_CPU, self.run_dir)
        try:
            self._warm([srv])
            res.connect["small"] = self._connect([srv], p.small_n)
            self.sweep([srv], res, "fanout-small", p.small_n, p.small_rates)
            self.pool.close()
        finally:
            srv.stop()

        srv = launcher.start(system, SERVER_CPU, self.run_dir)
        try:
            self._warm([srv])
            time.sleep(0.5)
            rss0 = srv.rss()
            res.connect["large"] = self._connect([srv], p.large_n)
            time.sleep(1.0)
            rss1 = srv.rss()
            n = res.connect["large"]["clients"]
            res.memory = {
                "rss_before": rss0,
                "rss_after": rss1,
                "clients": n,
                "kb_per_conn": (rss1 - rss0) / max(n, 1) / 1024,
            }
            self.log(
                f"    memory: {rss0 / 2**20:.1f} → {rss1 / 2**20:.1f} MiB, "
                f"{res.memory['kb_per_conn']:.2f} KB per idle connection"
            )
            self.sweep([srv], res, "fanout-large", p.large_n, p.large_rates)
            self.sweep([srv], res, "targeted", p.large_n, p.targeted_rates, targeted=True)
            self.pool.close()
        finally:
            srv.stop()
        return res

    def scaleout(self, res: SystemResult, redis_url: str, prefix: str) -> None:
        """tidings only: p50 with clients on a second process behind Redis, against one memory-bus process."""
        p = self.profile
        self.log("== tidings scale-out (Redis)")
        ref = launcher.start("tidings", SERVER_CPU, self.run_dir, tag="-ref")
        try:
            self._warm([ref])
            self._connect([ref], p.scaleout_n)
            st_ref, _ = self.step(
                [ref], "tidings", "scaleout-ref", p.scaleout_n, p.scaleout_rate, targeted=False
            )
            self.pool.close()
        finally:
            ref.stop()
        a = launcher.start(
            "tidings", SERVER_CPU, self.run_dir, bus_url=redis_url, redis_prefix=prefix, tag="-a"
        )
        b = launcher.start(
            "tidings", SERVER_CPU, self.run_dir, bus_url=redis_url, redis_prefix=prefix, tag="-b"
        )
        try:
            self._warm([a, b])
            self._connect([a, b], p.scaleout_n)
            st, per_worker = self.step(
                [a, b], "tidings", "scaleout", p.scaleout_n, p.scaleout_rate, targeted=False
            )
            self.pool.close()
        finally:
            a.stop()
            b.stop()
            _drop_redis_keys(redis_url, prefix)
        on_a = Latency.of([x for i, w in enumerate(per_worker) if i % 2 == 0 for x in w])
        on_b = Latency.of([x for i, w in enumerate(per_worker) if i % 2 == 1 for x in w])
        res.steps += [st_ref, st]
        res.extra["scaleout"] = {
            "rate": p.scaleout_rate,
            "clients": p.scaleout_n,
            "ref_p50": st_ref.latency.p50,
            "ref_p99": st_ref.latency.p99,
            "a_p50": on_a.p50,
            "b_p50": on_b.p50,
            "a_p99": on_a.p99,
            "b_p99": on_b.p99,
            "added_p50_remote": on_b.p50 - st_ref.latency.p50,
            "added_p50_local": on_a.p50 - st_ref.latency.p50,
            "complete": st.complete,
        }
        self.log(
            f"    hop: memory-bus p50 {st_ref.latency.p50:.2f} ms; Redis: publisher's p50 {on_a.p50:.2f} ms, "
            f"other-process p50 {on_b.p50:.2f} ms"
        )
