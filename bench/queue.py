"""Queue and worker throughput on this machine (not a test): `.venv/bin/python -m bench.queue`.

Measures, for the memory and Redis Streams queues: enqueue rate, reserve+ack rate (batches of 50), and jobs/s
through a Worker whose one provider answers at once (so the number is the queue + worker overhead per job, one
device per job, no database), and the reclaim delay after a consumer dies (visibility timeout 0.5 s).
"""

from __future__ import annotations

import asyncio
import time
import uuid

from redis.asyncio import Redis
from tests.delivery.fakes import FakeDevice, FakeLog, FakeProvider, FakeStore
from tests.support import REDIS_URL, drop_prefix

from tidings.delivery.queue import PushJob, Queue, QueueOptions
from tidings.delivery.queue.memory import MemoryQueue
from tidings.delivery.queue.redis import RedisQueue
from tidings.delivery.worker import Worker

N = 5000


def job(i: int) -> PushJob:
    return PushJob(f"ev-{i}", "order.created", {"users": ["u1"]}, {"mode": "silent"}, {"order_id": i})


async def bench(name: str, make: type[Queue] | object) -> None:
    queue: Queue = make()  # type: ignore[operator]
    t0 = time.perf_counter()
    for i in range(N):
        await queue.enqueue(job(i))
    enq = N / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    done = 0
    while done < N:
        leases = await queue.reserve("c", 50, block_seconds=0.1)
        for lease in leases:
            await queue.ack(lease)
        done += len(leases)
    drain = N / (time.perf_counter() - t0)

    for i in range(N):
        await queue.enqueue(job(i))
    store = FakeStore([FakeDevice("d1", "u1", "apns", "t1")])
    log = FakeLog()
    worker = Worker(
        queue=queue, devices=store, providers={"apns": FakeProvider("apns")}, log=log, burst=True, max_jobs=50
    )
    t0, cpu0 = time.perf_counter(), time.process_time()
    await worker.run()
    through = N / (time.perf_counter() - t0)
    per_job = (time.process_time() - cpu0) / N * 1e6
    assert worker.counters["jobs.complete"] == N, repr(worker)
    await queue.close()
    print(
        f"{name:7s} enqueue {enq:8.0f}/s   reserve+ack {drain:8.0f}/s   worker (1 device/job) {through:7.0f} jobs/s"
        f" {per_job:5.0f} µs CPU/job"
    )


async def fan_out(name: str, make: object, devices: int = 20_000) -> None:
    """One event to many devices: the per-device cost of the dispatcher (provider answers at once).

    CPU time of this process per device, not only wall time: the machine is shared, and the figure that must
    stay flat is what the worker spends per push (Redis' own CPU is not included).
    """
    queue: Queue = make()  # type: ignore[operator]
    await queue.enqueue(job(0))
    store = FakeStore([FakeDevice(f"d{i}", "u1", "apns", f"t{i}") for i in range(devices)])
    provider = FakeProvider("apns")
    worker = Worker(queue=queue, devices=store, providers={"apns": provider}, log=FakeLog(), burst=True)
    t0, cpu0 = time.perf_counter(), time.process_time()
    await worker.run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert len(provider.sent) == devices and len(provider.prepared) == 1
    await queue.close()
    print(
        f"fan-out {name:6s} one job to {devices} devices (concurrency 64): {devices / wall:,.0f} devices/s, "
        f"{cpu / devices * 1e6:.1f} µs CPU/device, checkpoint writes {worker.counters['checkpoint.writes']}"
    )


async def reclaim(make: object) -> float:
    queue: Queue = make()  # type: ignore[operator]
    await queue.enqueue(job(0))
    [lease] = await queue.reserve("dies", 1, block_seconds=1)
    taken = time.perf_counter()
    again = await queue.reserve("other", 1, block_seconds=5)
    assert again and again[0].id == lease.id
    await queue.ack(again[0])
    await queue.close()
    return time.perf_counter() - taken


async def main() -> None:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    client: Redis = Redis.from_url(REDIS_URL)
    try:
        await bench("memory", lambda: MemoryQueue())
        await bench("redis", lambda: RedisQueue(REDIS_URL, prefix=prefix))
        await fan_out("memory", lambda: MemoryQueue())
        await fan_out("redis", lambda: RedisQueue(REDIS_URL, prefix=prefix + "f"))
        options = QueueOptions(visibility_timeout=0.5)
        mem = await reclaim(lambda: MemoryQueue(options))
        red = await reclaim(lambda: RedisQueue(REDIS_URL, prefix=prefix + "r", options=options))
        print(f"reclaim after a dead consumer (visibility 0.5 s): memory {mem:.3f}s  redis {red:.3f}s")
    finally:
        await drop_prefix(client, prefix)
        await drop_prefix(client, prefix + "r")
        await drop_prefix(client, prefix + "f")
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
