"""Helpers shared by the policy micro-benchmarks: timing loops, a Redis client that counts round trips, the
host's foreign load, and a plain table."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psutil
from redis.asyncio import Redis

REDIS_URL = os.environ.get("TIDINGS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")


class CountingRedis(Redis):
    """Counts commands sent on their own and pipelines (each one round trip)."""

    round_trips = 0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.round_trips += 1
        return await super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        async def counted(raise_on_error: bool = True) -> Any:
            self.round_trips += 1
            return await execute(raise_on_error)

        pipe.execute = counted  # type: ignore[method-assign]
        return pipe


def prefix() -> str:
    return f"bench-policy-{uuid.uuid4().hex[:8]}"


async def drop(client: Redis, key_prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{key_prefix}:*", count=1000)]
    for start in range(0, len(keys), 1000):
        await client.delete(*keys[start : start + 1000])


async def per_call_us(call: Callable[[int], Awaitable[object]], n: int) -> tuple[float, float]:
    """Mean (wall, this process's CPU) time of `call(i)` for i in range(n), in µs; one call in flight.

    On a shared host the wall time includes waiting for a core; the CPU time does not."""
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        await call(i)
    return (time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6


class ScriptTime:
    """Redis's own time running scripts (INFO commandstats, EVALSHA) across a block of `n` script calls.

    The counters are server-wide: if other clients ran scripts meanwhile the figure is marked with `*`."""

    def __init__(self, client: Redis, n: int) -> None:
        self._client, self._n = client, n

    async def _read(self) -> tuple[int, int]:
        stats: Any = await self._client.info("commandstats")
        entry = stats.get("cmdstat_evalsha", {"calls": 0, "usec": 0})
        return int(entry["calls"]), int(entry["usec"])

    async def __aenter__(self) -> ScriptTime:
        self._before = await self._read()
        return self

    async def __aexit__(self, *exc: object) -> None:
        calls, usec = await self._read()
        calls, usec = calls - self._before[0], usec - self._before[1]
        mark = "" if calls == self._n else "*"
        self.text = f"{usec / calls:,.1f}{mark}" if calls else "-"


class ForeignLoad:
    """CPU used on the host by other processes while the bench runs, in % of one core."""

    def __enter__(self) -> ForeignLoad:
        self._me = psutil.Process()
        self._host0 = psutil.cpu_times()
        self._me0 = self._me.cpu_times()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        host, me = psutil.cpu_times(), self._me.cpu_times()
        busy = (host.user + host.system) - (self._host0.user + self._host0.system)
        mine = (me.user + me.system) - (self._me0.user + self._me0.system)
        self.pct = max(0.0, busy - mine) / (time.perf_counter() - self._t0) * 100


def table(headers: list[str], rows: list[list[object]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join([line, sep, *body])
