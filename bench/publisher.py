"""The publisher: one keep-alive HTTP connection posting events at a controlled rate.

Why a schedule rather than a fixed batch size: ``due = rate * elapsed - sent`` events are sent on each
wake-up, as one JSON list when more than one is due. A server slow to answer therefore receives larger batches
instead of a lower rate, so the offered rate stays what the sweep asked for and overload shows up as latency.
Each event carries ``{"t": time.time_ns()}`` stamped just before the request is written.

It runs in its own process (pinned with the generators) so that its CPU never lands on the server's core.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import orjson

from bench.protocol import EVENT_TYPE, publish_request

TICK_S = 0.005


@dataclass(frozen=True)
class Plan:
    """One publishing run: ``rate`` events/s for ``seconds``, to a topic or to random single users."""

    host: str
    port: int
    rate: float
    seconds: float
    topic: str | None = None
    n_users: int = 0
    batch_max: int = 100  # tidings' default TIDINGS_MAX_BATCH


def _events(plan: Plan, n: int) -> bytes:
    t = time.time_ns()
    if plan.topic is not None:
        evs = [{"type": EVENT_TYPE, "data": {"t": t}, "to": {"topics": [plan.topic]}} for _ in range(n)]
    else:
        evs = [
            {"type": EVENT_TYPE, "data": {"t": t}, "to": {"users": [f"u{random.randrange(plan.n_users)}"]}}
            for _ in range(n)
        ]
    return orjson.dumps(evs[0] if n == 1 else evs)


async def _post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> int:
    """Send one request and read the response (Content-Length bodies only, as every system here answers)."""
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def run(plan: Plan) -> dict[str, Any]:
    """Publish per ``plan``; report what was actually sent and how long it took."""
    reader, writer = await asyncio.open_connection(plan.host, plan.port)
    sent = requests = errors = max_batch = 0
    t0 = time.monotonic()
    end = t0 + plan.seconds
    # Above 1/TICK_S events/s, wait at least TICK_S between requests so the batch grows with the rate rather
    # than the request count (what a real backend batching its publishes does); a full batch goes on at once.
    min_gap = TICK_S if plan.rate * TICK_S >= 1 else 0.0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = min(int(plan.rate * (now - t0)) + 1 - sent, plan.batch_max)
        if due <= 0:
            await asyncio.sleep(t0 + sent / plan.rate - now)
            continue
        status = await _post(reader, writer, publish_request(plan.host, plan.port, _events(plan, due)))
        if status not in (200, 202):
            errors += 1
        sent += due
        requests += 1
        max_batch = max(max_batch, due)
        if due < plan.batch_max:
            await asyncio.sleep(max(t0 + sent / plan.rate - time.monotonic(), min_gap))
    elapsed = time.monotonic() - t0
    writer.close()
    return {"sent": sent, "seconds": elapsed, "requests": requests, "errors": errors, "max_batch": max_batch}


def _main(conn: Connection, cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    while True:
        plan = conn.recv()
        if plan is None:
            return
        c0 = time.process_time()
        out = asyncio.run(run(plan))
        out["cpu_s"] = time.process_time() - c0
        conn.send(out)


class Publisher:
    """Coordinator-side handle: ``publish(plan)`` blocks until the run finishes and returns its report."""

    def __init__(self, cpu: int | None) -> None:
        ctx = mp.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=_main, args=(child, cpu), daemon=True)
        self.proc.start()

    def publish(self, plan: Plan) -> dict[str, Any]:
        self.pipe.send(plan)
        if not self.pipe.poll(plan.seconds + 60):
            raise TimeoutError("publisher did not finish")
        out: dict[str, Any] = self.pipe.recv()
        return out

    def shutdown(self) -> None:
        with contextlib.suppress(OSError):
            self.pipe.send(None)
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
