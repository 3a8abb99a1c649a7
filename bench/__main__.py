"""``python -m bench [--quick] [--systems tidings,naive,ceiling]``: run the suite and write the results.

The coordinator process is pinned to the generator CPU too, so the only thing on CPU 0 is the server under
test. Systems run one after another (never concurrently) and each gets fresh processes. A system that fails to
start or dies is reported as an error row instead of aborting the run, so the baselines still produce a table
while tidings is under construction.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import launcher, report
from bench.generator import raise_nofile
from bench.scenarios import FULL, GEN_CPU, QUICK, Profile, Runner
from bench.stats import SystemResult

REDIS_URL = "redis://127.0.0.1:6379/13"


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small smoke run (~1-2 min): validates the machinery")
    p.add_argument(
        "--systems", default=",".join(launcher.SYSTEMS), help="comma list of tidings,naive,ceiling"
    )
    p.add_argument("--no-scaleout", action="store_true", help="skip the two-process Redis scenario")
    p.add_argument("--no-push", action="store_true", help="skip bench/push even when present")
    p.add_argument("--gen-procs", type=int, default=None, help="load generator processes (default 2)")
    p.add_argument("--out", default=None, help="output stem under bench/ (default RESULTS, or RESULTS-quick)")
    return p.parse_args()


def _push_section(quick: bool) -> list[str]:
    """Run bench/push (owned by another engineer) when it exists; include its output verbatim."""
    main = launcher.ROOT / "bench" / "push" / "__main__.py"
    if not main.exists():
        return []
    cmd = [sys.executable, "-m", "bench.push"]
    helptext = subprocess.run(
        [*cmd, "--help"], cwd=launcher.ROOT, capture_output=True, text=True, timeout=60
    ).stdout
    if quick and "--quick" in helptext:
        cmd.append("--quick")
    elif quick and "--seconds" in helptext:
        cmd += ["--seconds", "1"]
    print("== push (bench/push)", flush=True)
    try:
        out = subprocess.run(cmd, cwd=launcher.ROOT, capture_output=True, text=True, timeout=300)
        body = out.stdout.strip() or out.stderr.strip()[-2000:]
    except subprocess.TimeoutExpired:
        body = "bench/push timed out after 300 s"
    print(body, flush=True)
    return ["## Push (bench/push)", "", body, ""]


def _reset(runner: Runner) -> None:
    """After a failed system, drop whatever clients are left so the next system starts clean."""
    try:
        runner.pool.close()
    except Exception as exc:
        print(f"warning: could not reset the generators: {exc!r}", flush=True)


def main() -> int:
    args = _args()
    base = QUICK if args.quick else FULL
    profile = Profile(**{**base.__dict__, **({"gen_procs": args.gen_procs} if args.gen_procs else {})})
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if os.cpu_count() and os.cpu_count() >= 2:  # type: ignore[operator]
        os.sched_setaffinity(0, {GEN_CPU})
    raise_nofile()
    notes = launcher.check_host_limits(profile.large_n)
    for w in notes:
        print("warning:", w, flush=True)
    run_dir = Path(tempfile.mkdtemp(prefix="tidings-bench-"))
    print(f"profile {profile.name}; server logs in {run_dir}", flush=True)
    t0 = time.monotonic()
    results: dict[str, SystemResult] = {}
    runner = Runner(profile, run_dir, log=lambda s: print(s, flush=True))
    try:
        for system in systems:
            try:
                results[system] = runner.run_system(system)
            except Exception as exc:  # a broken system is a row, not a crashed run
                traceback.print_exc()
                results[system] = SystemResult(system, error=str(exc)[:300])
                notes.append(f"{system}: {(str(exc) or repr(exc)).splitlines()[0][:200]}")
                _reset(runner)
        if "tidings" in systems and not args.no_scaleout and not results["tidings"].error:
            try:
                runner.scaleout(results["tidings"], REDIS_URL, f"bench{os.getpid()}")
            except Exception as exc:
                traceback.print_exc()
                notes.append(f"scale-out: {(str(exc) or repr(exc)).splitlines()[0][:200]}")
                _reset(runner)
    finally:
        runner.close()
    extra = [] if args.no_push else _push_section(args.quick)
    notes.append(f"run took {time.monotonic() - t0:.0f} s")
    table = report.write(
        results, profile, notes, extra, stem=args.out or ("RESULTS-quick" if args.quick else "RESULTS")
    )
    print()
    print(table)
    return 0 if all(not r.error for r in results.values()) else 1


if __name__ == "__main__":
    with launcher.exclusive():
        code = main()
    sys.exit(code)
