"""Cost of a debounce `offer` (and `claim_due`) in memory and on Redis: µs per call and round trips per call.

    .venv/bin/python -m bench.policy_debounce [--n 2000]      # ~10-20 s; Redis at redis://127.0.0.1:6379/13

Cases: `lead` (a fresh key: the leading edge), `held` (an open window gains one event), `held, full` (the
window already holds 100 list items and 100 ids: the worst Lua decode/merge/encode), and `claim` (closing a due
window, per window, in batches of 100). Event data is the task app's hint with 10 changed ids. Calls are
sequential (one in flight), so Redis figures are round-trip latency + script time on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any, cast

from tidings.policy import DebounceOptions, DebounceStore, MemoryDebounce
from tidings.policy.debounce_redis import RedisDebounce

from .policy_common import (
    REDIS_URL,
    CountingRedis,
    ForeignLoad,
    ScriptTime,
    drop,
    per_call_us,
    prefix,
    table,
)

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def hint(i: int) -> dict[str, Any]:
    return {
        "todayCountChanged": i % 3 == 0,
        "changedScopes": ["today", f"list-{i % 4}"],
        "updatedTaskIds": [f"task-{i * 10 + j}" for j in range(10)],
    }


async def measure(store: DebounceStore, clock: Clock, n: int, rt: CountingRedis | None) -> list[list[object]]:
    rows: list[list[object]] = []

    async def case(name: str, call: Any, count: int) -> None:
        if rt is None:
            wall, cpu = await per_call_us(call, count)
            rows.append([name, f"{wall:,.1f}", f"{cpu:,.1f}", "-", "-"])
            return
        async with ScriptTime(rt, count) as server:
            before = rt.round_trips
            wall, cpu = await per_call_us(call, count)
            trips = f"{((rt.round_trips - before) / count):.2f}"
        rows.append([name, f"{wall:,.1f}", f"{cpu:,.1f}", server.text, trips])

    await case("offer: lead (new key)", lambda i: store.offer(f"lead-{i}", f"e{i}", hint(i), window=60), n)
    await store.offer("held", "e0", hint(0), window=3600)
    await case("offer: held", lambda i: store.offer("held", f"h{i}", hint(i % 5), window=3600), n)
    await store.offer("full", "e0", hint(0), window=3600)
    for i in range(1, 200):  # 200 events x 10 distinct ids: the union is at its bound of 100
        await store.offer("full", f"f{i}", hint(i), window=3600)
    await case("offer: held, window full", lambda i: store.offer("full", f"g{i}", hint(i), window=3600), n)

    keys = n
    for i in range(keys):
        await store.offer(f"due-{i}", f"d{i}", hint(i), window=1)
        await store.offer(f"due-{i}", f"d{i}b", hint(i + 1), window=1)
    clock.now = T0 + 3600 * 2
    before = rt.round_trips if rt else 0
    loop = asyncio.get_running_loop()
    started, cpu = loop.time(), time.process_time()
    claimed = 0
    while batch := await store.claim_due(limit=100):
        claimed += len(batch)
        for closed in batch:
            await store.ack(closed)
    elapsed, cpu = loop.time() - started, time.process_time() - cpu
    trips = f"{((rt.round_trips - before) / claimed):.2f}" if rt else "-"
    per = [f"{elapsed / claimed * 1e6:,.1f}", f"{cpu / claimed * 1e6:,.1f}"]
    rows.append(["claim + ack, per window (batches of 100)", *per, "-", trips])
    return rows


async def main(n: int) -> None:
    results: dict[str, list[list[object]]] = {}
    with ForeignLoad() as load:
        clock = Clock()
        results["memory"] = await measure(MemoryDebounce(DebounceOptions(clock=clock)), clock, n * 5, None)
        client = cast(CountingRedis, CountingRedis.from_url(REDIS_URL))
        key_prefix = prefix()
        try:
            clock = Clock()
            store = RedisDebounce(prefix=key_prefix, options=DebounceOptions(clock=clock), client=client)
            await store.offer("warm", "w", {}, window=1)  # load the scripts
            await store.claim_due()
            results["redis"] = await measure(store, clock, n, client)
        finally:
            await drop(client, key_prefix)
            await client.aclose()
    rows = [[backend, *row] for backend, backend_rows in results.items() for row in backend_rows]
    headers = ["store", "case", "µs per call (wall)", "client CPU µs", "Redis µs (script)", "round trips"]
    print(table(headers, rows))
    print("\n* other clients ran scripts on this Redis meanwhile: the Redis figure includes theirs")
    print(f"\nforeign CPU on the host during the run: {load.pct:.0f}% of one core")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.policy_debounce", description=__doc__)
    parser.add_argument("--n", type=int, default=2000, help="calls per Redis case (memory: 5x)")
    asyncio.run(main(parser.parse_args().n))
