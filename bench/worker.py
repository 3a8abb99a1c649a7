"""Push throughput of one `tidings worker` process, real parts end to end (not a test):

    .venv/bin/python -m bench.worker [devices]

`tidings sandbox` runs in its own process on CPU 0, `tidings worker` on CPU 1 (started first: steady state,
not start-up); Redis Streams queue, SQLite registry and delivery log. Two workloads: one event to N APNs
devices (fan-out), and N/10 events of 10 devices each (many small jobs). Reported: notifications/s from
enqueue to the queue being empty, including audience lookup, mark_used and the delivery-log insert, with
each process's CPU time. BENCH_DB_URL=postgresql+asyncpg://... uses PostgreSQL (an empty database);
BENCH_PROFILE=<path> profiles the worker; BENCH_ONLY=fan|small runs one workload.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from tests.support import drop_prefix

from tidings import db
from tidings.delivery.log import DeliveryLog
from tidings.delivery.queue import PushJob
from tidings.delivery.queue.redis import RedisQueue
from tidings.registry.store import DeviceStore
from tidings.registry.validation import DeviceIn

REDIS = "redis://127.0.0.1:6379/0"
SRC = str(Path(__file__).resolve().parents[1] / "src")  # bench/ sits in the project root


def pinned(cpu: int, *args: str) -> list[str]:
    profile = os.environ.get("BENCH_PROFILE")  # a path: profile the worker process with cProfile
    if profile and args[0] == "worker":
        return [
            "taskset",
            "-c",
            str(cpu),
            sys.executable,
            "-m",
            "cProfile",
            "-o",
            profile,
            "-m",
            "tidings",
            *args,
        ]
    return ["taskset", "-c", str(cpu), sys.executable, "-m", "tidings", *args]


def start_sandbox(directory: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    env = os.environ | {"PYTHONPATH": SRC}
    proc = subprocess.Popen(
        pinned(
            0,
            "sandbox",
            "--dir",
            str(directory),
            "--apns-port",
            "0",
            "--apns-control-port",
            "0",
            "--fcm-port",
            "0",
            "--webpush-port",
            "0",
        ),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    env_file = directory / "sandbox.env"
    while not env_file.exists() or "TIDINGS_APNS_URL" not in env_file.read_text():
        if time.monotonic() > deadline:
            raise RuntimeError("the sandbox did not start")
        time.sleep(0.05)
    time.sleep(0.2)
    values = {}
    for line in env_file.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.removeprefix("export ").partition("=")
            values[key.strip()] = value.strip().strip("'\"")
    return proc, values


async def run(devices: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    sandbox, sandbox_env = start_sandbox(tmp / "sandbox")
    url = os.environ.get("BENCH_DB_URL") or f"sqlite+aiosqlite:///{tmp / 'tidings.db'}"
    prefix = f"bench-worker-{uuid.uuid4().hex[:8]}"
    try:
        await db.upgrade(url)
        engine = db.create_engine(url)
        store = DeviceStore(engine)
        for i in range(devices):
            await store.register(
                f"u{i % (devices // 10)}",
                DeviceIn(provider="apns", platform="ios", token=os.urandom(32).hex()),
            )
        env = (
            os.environ
            | sandbox_env
            | {
                "PYTHONPATH": SRC,
                "TIDINGS_BUS_URL": REDIS,
                "TIDINGS_REDIS_PREFIX": prefix,
                "TIDINGS_DATABASE_URL": url,
                "TIDINGS_DATA_DIR": str(tmp),
                "TIDINGS_LOG_LEVEL": "warning",
            }
        )
        queue = RedisQueue(REDIS, prefix=prefix)
        users = [f"u{i}" for i in range(devices // 10)]
        workloads = {
            f"1 event x {devices} devices": [job("fan", users)],
            f"{devices // 10} events x 10 devices": [job(f"small-{i}", [u]) for i, u in enumerate(users)],
        }
        only = os.environ.get("BENCH_ONLY")  # fan | small
        if only:
            keep = "1 event" if only == "fan" else f"{devices // 10} events"
            workloads = {name: jobs for name, jobs in workloads.items() if name.startswith(keep)}
        log_path = tmp / "worker.log"
        with log_path.open("wb") as out:
            worker = start_worker(env | {"TIDINGS_LOG_LEVEL": "info"}, out)
        try:
            while "started on" not in log_path.read_text():
                await asyncio.sleep(0.05)
            worker_cpu = _cpu(worker.pid)
            for name, jobs in workloads.items():
                sandbox_cpu, worker_cpu = _cpu(sandbox.pid), _cpu(worker.pid)
                started = time.perf_counter()
                for j in jobs:
                    await queue.enqueue(j)
                while await queue.depth():
                    await asyncio.sleep(0.005)
                elapsed = time.perf_counter() - started
                sandbox_cpu, worker_cpu = _cpu(sandbox.pid) - sandbox_cpu, _cpu(worker.pid) - worker_cpu
                rows = await DeliveryLog(engine).query(event_id=jobs[-1].event_id, limit=1000)
                assert rows and all(r.outcome == "delivered" for r in rows), rows[:3]
                print(
                    f"{name:28s} {devices / elapsed:7,.0f} notifications/s, {len(jobs) / elapsed:7,.1f} jobs/s"
                    f"  (worker CPU {worker_cpu:.2f}s, sandbox CPU {sandbox_cpu:.2f}s, wall {elapsed:.2f}s)"
                )
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        print("   ", log_path.read_text().strip().splitlines()[-1])
        await queue.close()
        client = Redis.from_url(REDIS)
        await drop_prefix(
            client, prefix
        )  # the stream and the heartbeat set would stay behind, one pair per run
        await client.aclose()
        await engine.dispose()
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)


def start_worker(env: dict[str, str], out: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(pinned(1, "worker"), env=env, stderr=out)


def _cpu(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def job(event_id: str, users: list[str]) -> PushJob:
    return PushJob(event_id, "order.created", {"users": users}, {"mode": "silent"}, {"order_id": event_id})


if __name__ == "__main__":
    asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 5000))
