"""Cost of cluster-wide presence on Redis with 10,000 users on a process: what a heartbeat, a sync, a batch
query and reaping a dead process cost, and the Redis memory a process's state takes.

    .venv/bin/python -m bench.policy_presence [--users 10000]     # ~10-20 s; Redis at redis://127.0.0.1:6379/13

Calls are sequential on loopback, so µs figures are round trip + Redis time; `PING` gives the round trip alone.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any, cast

from tidings.policy import PresenceOptions
from tidings.policy.presence_redis import RedisPresence

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


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def make(client: CountingRedis, key_prefix: str, clock: Clock, **opts: float) -> RedisPresence:
    options = PresenceOptions(clock=clock, sync_delay=0, **opts)  # type: ignore[arg-type]
    return RedisPresence(prefix=key_prefix, options=options, client=client)


async def main(users: int) -> None:
    client = cast(CountingRedis, CountingRedis.from_url(REDIS_URL))
    key_prefix = prefix()
    rows: list[list[object]] = []

    async def row(name: str, call: Any, n: int, scripts: bool = True) -> None:
        async with ScriptTime(client, n if scripts else -1) as server:
            before = client.round_trips
            wall, cpu = await per_call_us(call, n)
            trips = f"{(client.round_trips - before) / n:.2f}"
        rows.append([name, f"{wall:,.1f}", f"{cpu:,.1f}", server.text if scripts else "-", trips])

    try:
        with ForeignLoad() as load:
            clock = Clock()
            names = [f"user-{i}" for i in range(users)]
            rows.append(["router: connected() + disconnected(), per pair", "", "", "-", "0"])
            local = make(client, key_prefix, clock)
            started = time.perf_counter()
            for _ in range(20):
                for name in names:
                    local.connected(name)
                for name in names:
                    local.disconnected(name)
            rows[-1][1] = rows[-1][2] = f"{(time.perf_counter() - started) / (20 * users) * 1e6:.2f}"

            await row("PING (the round trip alone)", lambda i: client.ping(), 500, scripts=False)
            small = make(client, key_prefix, clock)
            small.connected("solo")
            await small.flush()
            await row("heartbeat, process with 1 user", lambda i: small._beat(), 500)

            big = make(client, key_prefix, clock)
            for name in names:
                big.connected(name)
            before = client.round_trips
            started = time.perf_counter()
            await big.flush()  # first write: the whole state
            rows.append(
                [
                    f"first write of {users:,} users (heartbeat + full hash)",
                    f"{(time.perf_counter() - started) * 1e6:,.0f}",
                    "",
                    "-",
                    str(client.round_trips - before),
                ]
            )
            await row(f"heartbeat, process with {users:,} users", lambda i: big._beat(), 500)

            async def burst(i: int) -> None:
                for name in names[i * 100 : i * 100 + 100]:
                    big.disconnected(name)
                    big.connected(name)
                await big._sync()

            await row(
                "sync after 100 users changed (one write)", burst, min(100, users // 100), scripts=False
            )
            asker = make(client, key_prefix, clock)
            audience = names[:1000]
            await row("online_many(1,000) with 2 live processes", lambda i: asker.online_many(audience), 200)
            others = [make(client, key_prefix, clock) for _ in range(3)]
            for other in others:
                for name in names:
                    other.connected(name)
                await other.flush()
            await row("online_many(1,000) with 5 live processes", lambda i: asker.online_many(audience), 200)
            await row("status(one user) with 5 live processes", lambda i: asker.status(names[i]), 500)

            memory = await client.memory_usage(big.own_key) or 0
            rows.append(
                [
                    f"Redis memory of one process's hash ({users:,} users)",
                    f"{memory / 1024:,.0f} KiB",
                    "",
                    "",
                    "",
                ]
            )

            clock.now += 60  # everyone but `reaper` is now dead
            reaper = make(client, key_prefix, clock, reap_batch=1000)
            await row("heartbeat that reaps 1,000 users of a dead process", lambda i: reaper._beat(), 10)
        rows.append(["(foreign CPU on the host during the run)", f"{load.pct:.0f}% of a core", "", "", ""])
        print(
            table(
                ["operation", "µs per call (wall)", "client CPU µs", "Redis µs (script)", "round trips"], rows
            )
        )
        print("\n* other clients ran scripts on this Redis meanwhile: the Redis figure includes theirs")
    finally:
        await drop(client, key_prefix)
        await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.policy_presence", description=__doc__)
    parser.add_argument("--users", type=int, default=10_000)
    asyncio.run(main(parser.parse_args().users))
