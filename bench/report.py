"""Turn results into the markdown table (stdout and ``bench/RESULTS.md``), JSON and the p99-vs-rate plot.

The summary puts the three systems side by side with tidings/naive and tidings/ceiling ratios, as issue 6
asks; the per-step tables under it keep every sweep point so a reader can check how a "best rate" was chosen.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.launcher import ROOT, SYSTEMS
from bench.stats import Step, SystemResult

BENCH = ROOT / "bench"
LIBS = (
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "sse-starlette",
    "orjson",
    "pydantic",
    "redis",
    "PyJWT",
    "psutil",
    "matplotlib",
)


def machine() -> dict[str, str]:
    """CPU model, cores, Python, kernel, library versions, commit: what a reader needs to compare runs."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "somaxconn": _read("/proc/sys/net/core/somaxconn"),
    }
    with contextlib.suppress(OSError):
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    versions = []
    for lib in ("tidings", *LIBS):
        try:
            versions.append(f"{lib} {metadata.version(lib)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{lib} (source tree)" if lib == "tidings" else f"{lib} -")
    info["libraries"] = ", ".join(versions)
    return info


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return "?"


def _ms(x: float) -> str:
    return "—" if math.isnan(x) else (f"{x:.1f}" if x < 100 else f"{x:.0f}")


def _num(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "—"
    return f"{x:,.0f}" if x >= 100 else f"{x:.2f}"


def _lat(st: Step | None) -> str:
    return "—" if st is None else f"{_ms(st.latency.p50)} / {_ms(st.latency.p99)} / {_ms(st.latency.max)}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return "—"
    return f"{a / b:.2f}x"


GEN_BOUND = 90.0  # generator CPU % from which a step measures the generator as much as the server

Row = tuple[str, Callable[[SystemResult], float | None], Callable[[SystemResult], str] | None]


def _common_rate(results: dict[str, SystemResult], scn: str) -> float | None:
    """The highest offered rate every measured system was run at: per-delivery CPU compares only there."""
    sets = [{s.offered_eps for s in r.steps if s.scenario == scn} for r in results.values() if not r.error]
    common = set.intersection(*sets) if sets else set()
    return max(common) if common else None


def _rows(small: int, large: int, common: dict[str, float | None]) -> list[Row]:
    def best(scn: str, ms: float) -> Callable[[SystemResult], float | None]:
        return lambda r: b.deliveries_per_s if (b := r.best(scn, ms)) else None

    def lat(scn: str, ms: float) -> Callable[[SystemResult], str]:
        return lambda r: _lat(r.best(scn, ms))

    def cpu(scn: str, ms: float) -> Callable[[SystemResult], float | None]:
        return lambda r: b.server_us_per_delivery if (b := r.best(scn, ms)) else None

    def capacity(scn: str, ms: float) -> Callable[[SystemResult], float | None]:
        def f(r: SystemResult) -> float | None:
            b = r.best(scn, ms)
            return b.deliveries_per_s / (b.server_cpu_pct / 100) if b and b.server_cpu_pct > 0 else None

        return f

    def cpu_at(scn: str, rate: float | None) -> Callable[[SystemResult], float | None]:
        return lambda r: next(
            (s.server_us_per_delivery for s in r.steps if s.scenario == scn and s.offered_eps == rate), None
        )

    def first(scn: str) -> Callable[[SystemResult], float | None]:
        return lambda r: next((s.deliveries_per_s for s in r.steps if s.scenario == scn), None)

    def lat_first(scn: str) -> Callable[[SystemResult], str]:
        return lambda r: next(
            (f"{_lat(s)} ({s.deliveries_per_s:,.0f}/s)" for s in r.steps if s.scenario == scn), "—"
        )

    def conn(key: str) -> Callable[[SystemResult], float | None]:
        return lambda r: r.connect.get(key, {}).get("seconds")

    def rate(key: str) -> Callable[[SystemResult], float | None]:
        return lambda r: r.connect.get(key, {}).get("rate")

    return [
        (f"fan-out {small:,}: best deliveries/s with p99 ≤ 50 ms (↑)", best("fanout-small", 50), None),
        (
            f"fan-out {small:,}: p50 / p99 / max ms at that rate",
            best("fanout-small", 50),
            lat("fanout-small", 50),
        ),
        (f"fan-out {small:,}: server CPU µs per delivery at that rate (↓)", cpu("fanout-small", 50), None),
        (
            f"fan-out {small:,}: server CPU µs per delivery, all at {common['fanout-small'] or 0:g} ev/s (↓)",
            cpu_at("fanout-small", common["fanout-small"]),
            None,
        ),
        (
            f"fan-out {small:,}: that rate ÷ server CPU share (projected one-core capacity) (↑)",
            capacity("fanout-small", 50),
            None,
        ),
        (
            f"fan-out {small:,}: highest deliveries/s kept up with (p99 ≤ 1 s) (↑)",
            best("fanout-small", 1000),
            None,
        ),
        (
            f"fan-out {small:,}: p50 / p99 / max ms at that rate",
            best("fanout-small", 1000),
            lat("fanout-small", 1000),
        ),
        (f"fan-out {small:,}: connect time s (↓)", conn("small"), None),
        (f"fan-out {large:,}: connect time s (↓)", conn("large"), None),
        (f"fan-out {large:,}: connect rate, connections/s (↑)", rate("large"), None),
        (f"fan-out {large:,}: best deliveries/s with p99 ≤ 100 ms (↑)", best("fanout-large", 100), None),
        (
            f"fan-out {large:,}: highest deliveries/s kept up with (p99 ≤ 1 s) (↑)",
            best("fanout-large", 1000),
            None,
        ),
        (
            f"fan-out {large:,}: p50 / p99 / max ms at that rate",
            best("fanout-large", 1000),
            lat("fanout-large", 1000),
        ),
        (f"fan-out {large:,}: server CPU µs per delivery at that rate (↓)", cpu("fanout-large", 1000), None),
        (
            f"fan-out {large:,}: server CPU µs per delivery, all at {common['fanout-large'] or 0:g} ev/s (↓)",
            cpu_at("fanout-large", common["fanout-large"]),
            None,
        ),
        (
            f"fan-out {large:,}: p50 / p99 / max ms at the lowest rate",
            first("fanout-large"),
            lat_first("fanout-large"),
        ),
        (f"targeted {large:,} users: best deliveries/s with p99 ≤ 50 ms (↑)", best("targeted", 50), None),
        (f"targeted {large:,}: p50 / p99 / max ms at that rate", best("targeted", 50), lat("targeted", 50)),
        (f"memory: KB RSS per idle connection at {large:,} (↓)", lambda r: r.memory.get("kb_per_conn"), None),
    ]


def _cell(
    r: SystemResult, value: Callable[[SystemResult], float | None], text: Callable[[SystemResult], str] | None
) -> str:
    if r.error:
        return "error"
    return text(r) if text else _num(value(r))


def summary_table(results: dict[str, SystemResult], small: int, large: int) -> str:
    names = [s for s in SYSTEMS if s in results]
    head = "| metric | " + " | ".join(names)
    sep = "|---|" + "---:|" * len(names)
    if "tidings" in names:
        others = [n for n in names if n != "tidings"]
        head += "".join(f" | tidings/{o}" for o in others)
        sep += "---:|" * len(others)
    lines = [head + " |", sep]
    common = {scn: _common_rate(results, scn) for scn in ("fanout-small", "fanout-large", "targeted")}
    for label, value, text in _rows(small, large, common):
        cells = [_cell(results[n], value, text) for n in names]
        if "tidings" in names:
            t = value(results["tidings"])
            cells += [_ratio(t, value(results[o])) if text is None else "" for o in names if o != "tidings"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    n_ratio = len(names) - 1 if "tidings" in names else 0
    so = results["tidings"].extra.get("scaleout") if "tidings" in results else None
    if so:
        cells = [f"{so['added_p50_remote']:+.2f} (p50 {so['b_p50']:.2f} vs {so['ref_p50']:.2f})"]
        cells += ["n/a"] * (len(names) - 1) + [""] * n_ratio
        lines.append("| scale-out via Redis: added p50 ms, other process (↓) | " + " | ".join(cells) + " |")
    gen = [max((s.gen_cpu_pct for s in results[n].steps), default=float("nan")) for n in names]
    cells = [f"{g:.0f}%" for g in gen] + [""] * n_ratio
    lines.append("| generator CPU, peak % of its core (sanity) | " + " | ".join(cells) + " |")
    other = [max((s.other_cpu_pct for s in results[n].steps), default=float("nan")) for n in names]
    cells = [f"{o:.0f}%" for o in other] + [""] * n_ratio
    lines.append("| foreign CPU on the host, peak % of a core (sanity) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(results: dict[str, SystemResult], small: int, large: int) -> str:
    """Issue 6's targets for tidings, each with the measured number and met / missed."""
    t, n, c = (results.get(k) for k in ("tidings", "naive", "ceiling"))
    if t is None or t.error:
        return "tidings was not measured in this run."
    rows = ["| target | tidings | | ceiling, same run |", "|---|---|---|---|"]
    c_ok = c is not None and not c.error

    def add(name: str, measured: str, ok: bool | None, ceiling: str = "") -> None:
        verdict = "met" if ok else "missed" if ok is False else "—"
        rows.append(f"| {name} | {measured} | {verdict} | {ceiling} |")

    tb, nb, cb = (r.best("fanout-small", 50) if r and not r.error else None for r in (t, n, c))
    tv = tb.deliveries_per_s if tb else 0.0
    if cb:
        add(
            f"fan-out {small:,}: ≥ 50% of the ceiling's deliveries/s (p99 ≤ 50 ms)",
            f"{tv:,.0f} vs {cb.deliveries_per_s:,.0f} = {100 * tv / cb.deliveries_per_s:.1f}%",
            tv >= 0.5 * cb.deliveries_per_s,
        )
    if n is not None and not n.error and nb is None:
        kept_t, kept_n = t.best("fanout-small", 1000), n.best("fanout-small", 1000)
        ratio = (
            f"; kept up with {kept_t.deliveries_per_s / kept_n.deliveries_per_s:.0f}x"
            if kept_t and kept_n
            else ""
        )
        add(f"fan-out {small:,}: ≥ 3x the naive baseline", f"naive: no step with p99 ≤ 50 ms{ratio}", tv > 0)
    if nb:
        add(
            f"fan-out {small:,}: ≥ 3x the naive baseline",
            f"{tv / nb.deliveries_per_s:.1f}x",
            tv >= 3 * nb.deliveries_per_s,
        )
    conn = t.connect.get("large", {})
    if conn:
        add(
            f"{large:,} clients connect in ≤ 2 s",
            f"{conn['seconds']:.2f} s ({conn['clients']:,.0f} clients)",
            conn["seconds"] <= 2 and conn["clients"] >= large,
            f"{c.connect['large']['seconds']:.2f} s" if c_ok and c and "large" in c.connect else "",
        )
    lb = t.best("fanout-large", 100)
    cl = c.best("fanout-large", 100) if c_ok and c else None
    c_low = next((s for s in c.steps if s.scenario == "fanout-large"), None) if c_ok and c else None
    add(
        f"{large:,} clients: ≥ 50,000 deliveries/s with p99 ≤ 100 ms",
        f"{lb.deliveries_per_s:,.0f} (p99 {lb.latency.p99:.0f} ms)" if lb else "no step passed",
        bool(lb and lb.deliveries_per_s >= 50_000),
        f"{cl.deliveries_per_s:,.0f}"
        if cl
        else f"no step passed (p99 {c_low.latency.p99:.0f} ms at its lowest rate)"
        if c_low
        else "",
    )
    if t.memory:
        kb = t.memory["kb_per_conn"]
        add(
            f"≤ 20 KB RSS per idle connection (at {large:,})",
            f"{kb:.1f} KB",
            kb <= 20,
            f"{c.memory['kb_per_conn']:.1f} KB" if c_ok and c and c.memory else "",
        )
    so = t.extra.get("scaleout")
    if so:
        add(
            "scale-out hop through Redis adds ≤ 5 ms to p50",
            f"{so['added_p50_remote']:+.2f} ms",
            so["added_p50_remote"] <= 5,
        )
    return "\n".join(rows)


def steps_table(results: dict[str, SystemResult]) -> str:
    lines = [
        "| scenario | system | clients | offered ev/s | deliveries/s | complete | p50 ms | p99 ms | max ms "
        "| server CPU % | µs/delivery | gen CPU % | other CPU % | lost conns |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in SYSTEMS:
        for s in results.get(name, SystemResult(name)).steps:
            lines.append(
                f"| {s.scenario} | {s.system} | {s.clients:,} | {s.offered_eps:g} "
                f"| {s.deliveries_per_s:,.0f} | {100 * s.complete:.1f}% "
                f"| {_ms(s.latency.p50)} | {_ms(s.latency.p99)} | {_ms(s.latency.max)} "
                f"| {s.server_cpu_pct:.0f} | {s.server_us_per_delivery:.1f} "
                f"| {s.gen_cpu_pct:.0f}{'*' if s.gen_cpu_pct >= GEN_BOUND else ''} | {s.other_cpu_pct:.0f} "
                f"| {s.lost_connections} |"
            )
    return "\n".join(lines)


def plot(results: dict[str, SystemResult], path: Path, small: int, large: int) -> bool:
    """p99 latency against achieved deliveries/s, one line per system, one panel per scenario."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return False
    panels = [
        ("fanout-small", f"fan-out, {small:,} clients", 50),
        ("fanout-large", f"fan-out, {large:,} clients", 100),
        ("targeted", f"targeted, {large:,} users", 50),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, (scn, title, bound) in zip(axes, panels, strict=True):
        for name in SYSTEMS:
            pts = [
                (s.deliveries_per_s, s.latency.p99)
                for s in results.get(name, SystemResult(name)).steps
                if s.scenario == scn and not math.isnan(s.latency.p99)
            ]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=name)
        ax.axhline(bound, color="grey", linestyle="--", linewidth=1)
        ax.set_yscale("log")
        ax.set_xscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_title(title)
        ax.set_xlabel("deliveries/s (achieved)")
        ax.set_ylabel("p99 latency, ms")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(
    results: dict[str, SystemResult],
    profile: Any,
    notes: list[str],
    extra_sections: list[str],
    stem: str = "RESULTS",
) -> str:
    """Write ``<stem>.md``, ``<stem>.json`` and ``<stem>.png`` under bench/; return the summary table."""
    small, large = profile.small_n, profile.large_n
    info = machine()
    command = "python -m bench" + (" --quick" if profile.name == "quick" else "")
    table = summary_table(results, small, large)
    png = BENCH / f"{stem}.png"
    plotted = plot(results, png, small, large)
    md = [
        "# tidings benchmark results",
        "",
        f"Profile `{profile.name}` — generated by `{command}`.",
        "Server under test pinned to CPU 0; load generator processes and the publisher pinned to CPU 1.",
        "All traffic on 127.0.0.1. (↑) higher is better, (↓) lower is better; ratios are tidings ÷ baseline.",
        "tidings runs as `python -m tidings serve` with `TIDINGS_ENV=development TIDINGS_LOG_LEVEL=warning` (memory",
        "bus); naive as uvicorn `--no-access-log --log-level warning`; all three on uvloop. A sweep step passes when",
        "≥ 99% of deliveries arrive and p99 is within the bound; 'best' is the highest passing step's achieved rate.",
        "Steps whose generator CPU is ≥ 90% (marked * in the step table) are limited by the load generator as much",
        "as by the server; the 'projected capacity' row divides the rate by the server's CPU share to compare",
        "servers there.",
        "'foreign CPU' is user+system CPU of processes that are neither the server nor the bench (other people's",
        "test runs; kernel softirq time is excluded): when it is high, latencies are inflated for every system.",
        "At 10,000 clients a single event takes even the ceiling >100 ms to reach the last client (10,000 loopback",
        "writes in sequence), so those rows also report the highest rate kept up with (p99 ≤ 1 s).",
        "Method and caveats: `bench/README.md`; profiles:",
        "`bench/FINDINGS.md`.",
        "",
        "## Machine",
        "",
        *[f"- **{k}**: {v}" for k, v in info.items()],
        "",
        "## Summary",
        "",
        table,
        "",
        "## Issue 6 targets (tidings)",
        "",
        targets(results, small, large),
        "",
        *([f"![p99 latency vs delivery rate]({stem}.png)", ""] if plotted else []),
        *(["## Notes", "", *[f"- {n}" for n in notes], ""] if notes else []),
        "## Every sweep step",
        "",
        steps_table(results),
        "",
        *extra_sections,
    ]
    (BENCH / f"{stem}.md").write_text("\n".join(md) + "\n")
    (BENCH / f"{stem}.json").write_text(
        json.dumps(
            {
                "machine": info,
                "profile": profile.name,
                "results": {k: v.to_json() for k, v in results.items()},
            },
            indent=1,
        )
    )
    return table
