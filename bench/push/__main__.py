"""Push throughput per worker process: tidings vs aioapns (APNs, HTTP/2) and pywebpush (Web Push), same sandbox.

    .venv/bin/python -m bench.push [--seconds 4] [--concurrency 100]

The sandbox (APNs h2c + Web Push, bench/push/serve.py) runs in its own process pinned to CPU 1; the senders
run here, pinned to CPU 0, one after another. Besides wall-clock throughput each row gives the sender's CPU per
notification and the rate that CPU allows ("CPU-bound rate"): on a 2-core machine the sandbox's own cost can
cap the wall-clock figure, and the CPU figure is what one worker process reaches when the far end keeps up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tidings.push.apns import ApnsProvider
from tidings.push.vapid import VapidKey
from tidings.push.webpush import WebPushProvider

from . import phases
from .phases import Phase

RESPONDER_ROW = "tidings Web Push (HTTP/2) -> minimal responder"


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})


def start_sandbox(
    directory: Path, key: ec.EllipticCurvePrivateKey, subscriptions: int
) -> tuple[subprocess.Popen[str], dict]:
    public = directory / "apns_public.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    proc = start_process("bench.push.serve", str(public), str(subscriptions), "1")
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def start_process(module: str, *args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path.cwd() / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", module, *args]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


async def measure(args: argparse.Namespace, info: dict, server: psutil.Process, pem: bytes) -> list[Phase]:
    run = {"seconds": args.seconds, "concurrency": args.concurrency, "server": server}
    results = [phases.encryption_phase(args.seconds, info["subscriptions"][0])]

    apns = ApnsProvider(
        key_pem=pem,
        key_id=phases.KEY_ID,
        team_id=phases.TEAM_ID,
        topic=phases.TOPIC,
        base_url=info["apns"],
        clock=time.time,
    )
    results.append(await phases.run_phase("tidings APNs (HTTP/2)", phases.tidings_apns(apns), **run))
    await apns.aclose()

    send, client = phases.aioapns_sender(pem, info["apns"])
    results.append(await phases.run_phase("aioapns 4.0 (HTTP/2)", send, **run))
    client.pool.close()

    vapid = VapidKey.generate()
    webpush = WebPushProvider(
        vapid_key=vapid, subject="mailto:bench@example.com", clock=time.time, http_hosts=["127.0.0.1"]
    )
    results.append(
        await phases.run_phase(
            "tidings Web Push (HTTP/2)", phases.tidings_webpush(webpush, info["subscriptions"]), **run
        )
    )
    await webpush.aclose()

    send, session = phases.pywebpush_sender(vapid, info["subscriptions_http1"])
    results.append(await phases.run_phase("pywebpush 2.5 (aiohttp, HTTP/1.1)", send, **run))
    await session.close()

    # The same Web Push sender against a responder that checks nothing: the sender runs flat out.
    responder = start_process("bench.push.responder", "1")
    assert responder.stdout is not None
    port = int(responder.stdout.readline())
    subs = [
        {**sub, "endpoint": f"http://127.0.0.1:{port}/push/{i}"}
        for i, sub in enumerate(info["subscriptions"])
    ]
    webpush = WebPushProvider(
        vapid_key=vapid, subject="mailto:bench@example.com", clock=time.time, http_hosts=["127.0.0.1"]
    )
    run["server"] = psutil.Process(responder.pid)
    results.append(await phases.run_phase(RESPONDER_ROW, phases.tidings_webpush(webpush, subs), **run))
    await webpush.aclose()
    assert responder.stdin is not None
    responder.stdin.close()
    responder.wait(10)
    return results


def report(results: list[Phase], args: argparse.Namespace) -> str:
    by = {r.name: r for r in results}
    lines = [
        f"Push throughput, one sender process (CPU 0) vs the sandbox (CPU 1), {args.seconds:.0f} s per row, "
        f"{args.concurrency} in flight, {'uvloop' if args.uvloop else 'asyncio'}",
        "",
        "| sender | sent | ok | wall rate /s | sender CPU µs/notif | CPU-bound rate /s | sandbox CPU µs/notif |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.sent} | {r.ok} | {r.rate:,.0f} | {r.client_us:,.0f} | {r.cpu_rate:,.0f} | "
            f"{r.server_us:,.0f} |"
        )
    t_apns, aio, fast = by["tidings APNs (HTTP/2)"], by["aioapns 4.0 (HTTP/2)"], by[RESPONDER_ROW]
    t_web, pyw, enc = (
        by["tidings Web Push (HTTP/2)"],
        by["pywebpush 2.5 (aiohttp, HTTP/1.1)"],
        by["RFC 8291 encryption alone"],
    )
    lines += [
        "",
        "| ratio | wall | CPU-bound | target |",
        "|---|---:|---:|---|",
        f"| tidings APNs / aioapns | {t_apns.rate / aio.rate:.2f}x | {t_apns.cpu_rate / aio.cpu_rate:.2f}x | >= 3x |",
        f"| tidings Web Push / pywebpush | {t_web.rate / pyw.rate:.2f}x | {t_web.cpu_rate / pyw.cpu_rate:.2f}x | |",
        f"| tidings Web Push / bare encryption | {t_web.rate / enc.rate:.0%} | {t_web.cpu_rate / enc.cpu_rate:.0%} "
        "| >= 80% |",
        f"| same, sender flat out (minimal responder) | {fast.rate / enc.rate:.0%} | "
        f"{fast.cpu_rate / enc.cpu_rate:.0%} | >= 80% |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--subscriptions", type=int, default=50)
    parser.add_argument("--no-uvloop", dest="uvloop", action="store_false")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    _pin(0)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with tempfile.TemporaryDirectory() as tmp:
        proc, info = start_sandbox(Path(tmp), key, args.subscriptions)
        try:
            if args.uvloop:
                with contextlib.suppress(ImportError):
                    import uvloop

                    uvloop.install()
            results = asyncio.run(measure(args, info, psutil.Process(proc.pid), pem))
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(10)
    print(report(results, args))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=2))


if __name__ == "__main__":
    main()
