"""``python -m bench.profile``: where a system under test spends its CPU, under the bench's own load.

Why here: the suite says how fast, this says why. It starts one system pinned to the server CPU, connects N
generator clients, publishes at a fixed rate and samples the server with py-spy (``pip install py-spy``) for
the publishing window. It writes a flame graph (SVG) and the collapsed stacks under bench/profiles/, and
prints the functions with the most own time and the most total time, so a hot path can be read in the
terminal.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import launcher
from bench.generator import GeneratorPool, raise_nofile
from bench.protocol import TOPIC
from bench.publisher import Plan, Publisher
from bench.scenarios import GEN_CPU, SERVER_CPU

OUT = launcher.ROOT / "bench" / "profiles"


def summarise(collapsed: Path, top: int) -> str:
    """Own-time and total-time tables from py-spy's collapsed ("raw") output."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        samples += n
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1] if " (" in f else f for f in stack.split(";")]
        own[frames[-1]] += n
        for f in set(frames):
            total[f] += n
    out = [f"{samples} samples", "", "own time:"]
    out += [f"  {100 * n / samples:5.1f}%  {f}" for f, n in own.most_common(top)]
    out += ["", "total time (inclusive):"]
    out += [f"  {100 * n / samples:5.1f}%  {f}" for f, n in total.most_common(top)]
    return "\n".join(out)


def _record(
    spy: str, srv: launcher.Server, seconds: float, stem: Path, native: bool, idle: bool = False
) -> subprocess.Popen[bytes]:
    """Start py-spy on the server for ``seconds``; collapsed stacks go to ``<stem>.txt``."""
    extra = ["--native"] if native else ["--nonblocking"]  # native stacks need to stop the process
    extra += ["--idle"] if idle else []
    Path(f"{stem}.txt").unlink(missing_ok=True)  # never read a previous run's stacks
    rec = subprocess.Popen(
        [
            spy,
            "record",
            "-p",
            str(srv.proc.pid),
            "-d",
            str(int(seconds)),
            "-r",
            "250",
            "-f",
            "raw",
            "-o",
            f"{stem}.txt",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(0.5)
    return rec


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument("--system", default="tidings", choices=launcher.SYSTEMS)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--rate", type=float, default=40, help="events/s")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--targeted", action="store_true", help="events to random single users instead of a topic")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--native", action="store_true", help="include native (C) frames")
    p.add_argument("--connect", action="store_true", help="profile the connect phase instead of publishing")
    p.add_argument("--idle", action="store_true", help="also sample idle time (where the server waits)")
    args = p.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {GEN_CPU})
    raise_nofile()
    OUT.mkdir(exist_ok=True)
    stem = OUT / f"{args.system}-{'targeted' if args.targeted else 'fanout'}-{args.clients}-{args.rate:g}"
    run_dir = Path(tempfile.mkdtemp(prefix="tidings-profile-"))
    pool, pub = GeneratorPool(2, GEN_CPU), Publisher(GEN_CPU)
    srv = launcher.start(args.system, SERVER_CPU, run_dir)
    if args.connect:
        stem = stem.with_name(f"{args.system}-connect-{args.clients}")
    try:
        rec: subprocess.Popen[bytes] | None = None
        if args.connect:
            rec = _record(spy, srv, args.seconds, stem, args.native, args.idle)
        c = pool.connect([srv.addr], TOPIC, [f"u{i}" for i in range(args.clients)])
        print(f"connected {c['ok']}/{args.clients} in {c['seconds']:.2f}s")
        if rec is None:
            rec = _record(spy, srv, args.seconds, stem, args.native, args.idle)
            pool.start()
            plan = Plan(
                srv.addr[0],
                srv.port,
                args.rate,
                args.seconds - 1,
                topic=None if args.targeted else TOPIC,
                n_users=args.clients if args.targeted else 0,
            )
            rep = pub.publish(plan)
            sample = pool.stop()
            print(f"published {rep['sent']} events, {sample.frames} deliveries")
        _, err = rec.communicate(timeout=60)
        if not Path(f"{stem}.txt").exists():
            print(err.decode(errors="replace"), file=sys.stderr)
            return 1
        print(summarise(Path(f"{stem}.txt"), args.top))
        print(f"\ncollapsed stacks: {stem}.txt (feed to flamegraph.pl or speedscope)")
    finally:
        pool.close()
        srv.stop()
        pool.shutdown()
        pub.shutdown()
    return 0


if __name__ == "__main__":
    with launcher.exclusive():
        code = main()
    sys.exit(code)
