"""One contract suite for every queue backend (memory and Redis Streams), as DESIGN §3 asks."""

from __future__ import annotations

import asyncio
import time

import pytest

from support import ManualClock
from tidings.delivery.queue import PushJob, Queue, QueueOptions


def job(event_id: str = "ev-1", attempt: int = 1, device_ids: tuple[str, ...] | None = None) -> PushJob:
    return PushJob(
        event_id=event_id,
        event_type="order.created",
        audience={"users": ["u1"], "roles": [], "topics": [], "broadcast": False},
        spec={"mode": "silent"},
        data={"order_id": 7},
        attempt=attempt,
        device_ids=device_ids,
    )


async def test_enqueued_job_round_trips_unchanged(queue: Queue) -> None:
    original = job(device_ids=("d1", "d2"))
    await queue.enqueue(original)
    [lease] = await queue.reserve("c1", count=1, block_seconds=1)
    assert lease.job == original
    assert lease.consumer == "c1" and lease.deliveries == 1


async def test_reserve_on_empty_queue_returns_after_block(queue: Queue) -> None:
    started = time.monotonic()
    assert await queue.reserve("c1", count=1, block_seconds=0.1) == []
    assert time.monotonic() - started < 1.0


async def test_blocked_reserve_wakes_on_enqueue(queue: Queue) -> None:
    async def later() -> None:
        await asyncio.sleep(0.05)
        await queue.enqueue(job())

    started = time.monotonic()
    async with asyncio.timeout(5):
        task = asyncio.create_task(later())
        leases = await queue.reserve("c1", count=1, block_seconds=3)
        await task
    assert len(leases) == 1
    assert time.monotonic() - started < 1.5


async def test_reserve_takes_at_most_count(queue: Queue) -> None:
    for i in range(5):
        await queue.enqueue(job(f"ev-{i}"))
    first = await queue.reserve("c1", count=3, block_seconds=0.1)
    second = await queue.reserve("c1", count=3, block_seconds=0.1)
    assert len(first) == 3 and len(second) == 2
    assert sorted(lease.job.event_id for lease in first + second) == [f"ev-{i}" for i in range(5)]


async def test_ack_removes_the_job(queue: Queue) -> None:
    await queue.enqueue(job())
    [lease] = await queue.reserve("c1", block_seconds=0.1)
    assert (await queue.stats()).in_flight == 1
    await queue.ack(lease)
    stats = await queue.stats()
    assert (stats.ready, stats.in_flight, stats.delayed, stats.dead) == (0, 0, 0, 0)
    assert await queue.depth() == 0


async def test_each_job_goes_to_exactly_one_of_many_consumers(queue: Queue) -> None:
    for i in range(40):
        await queue.enqueue(job(f"ev-{i}"))
    seen: list[str] = []

    async def consume(name: str) -> None:
        while leases := await queue.reserve(name, count=4, block_seconds=0.05):
            for lease in leases:
                seen.append(lease.job.event_id)
                await queue.ack(lease)

    async with asyncio.timeout(10):
        await asyncio.gather(*(consume(f"c{i}") for i in range(3)))
    assert sorted(seen) == sorted(f"ev-{i}" for i in range(40))


async def test_lease_of_a_dead_consumer_is_reclaimed_after_visibility_timeout(queue: Queue) -> None:
    await queue.enqueue(job())
    [lease] = await queue.reserve("dies", block_seconds=0.1)
    assert await queue.reserve("other", block_seconds=0.05) == []  # not before the timeout (0.3 s)
    async with asyncio.timeout(5):
        reclaimed = await queue.reserve("other", block_seconds=2)
    assert [r.job for r in reclaimed] == [lease.job]
    assert reclaimed[0].id == lease.id and reclaimed[0].deliveries == 2
    assert await queue.touch(lease) is False  # the dead consumer's lease is no longer its own
    await queue.ack(reclaimed[0])
    assert await queue.depth() == 0


async def test_touch_keeps_a_slow_job_from_being_reclaimed(queue: Queue) -> None:
    await queue.enqueue(job())
    [lease] = await queue.reserve("slow", block_seconds=0.1)
    for _ in range(4):  # 0.6 s in all, twice the visibility timeout
        await asyncio.sleep(0.15)
        assert await queue.touch(lease) is True
        assert await queue.reserve("other", block_seconds=0) == []
    await queue.ack(lease)


async def test_retry_is_invisible_until_due(queue: Queue, clock: ManualClock) -> None:
    await queue.enqueue(job())
    [lease] = await queue.reserve("c1", block_seconds=0.1)
    await queue.retry(lease, lease.job.next_attempt(("d2",)), delay=30)
    stats = await queue.stats()
    assert (stats.ready, stats.in_flight, stats.delayed, stats.due) == (0, 0, 1, 0)
    assert await queue.depth() == 1
    assert await queue.reserve("c1", block_seconds=0.05) == []
    clock.advance(31)
    assert (await queue.stats()).due == 1
    [again] = await queue.reserve("c1", block_seconds=0.5)
    assert again.job.attempt == 2 and again.job.device_ids == ("d2",)
    assert again.deliveries == 1


async def test_retry_without_delay_is_ready_at_once(queue: Queue) -> None:
    await queue.enqueue(job())
    [lease] = await queue.reserve("c1", block_seconds=0.1)
    await queue.retry(lease, lease.job, delay=0)
    [again] = await queue.reserve("c2", block_seconds=0.5)
    assert again.job == lease.job


async def test_identical_retries_do_not_collapse(queue: Queue, clock: ManualClock) -> None:
    await queue.enqueue(job())
    await queue.enqueue(job())
    leases = await queue.reserve("c1", count=2, block_seconds=0.1)
    for lease in leases:
        await queue.retry(lease, lease.job.next_attempt(None), delay=5)
    clock.advance(6)
    again = await queue.reserve("c1", count=5, block_seconds=0.3)
    assert len(again) == 2


async def test_enqueue_with_delay(queue: Queue, clock: ManualClock) -> None:
    await queue.enqueue(job(), delay=10)
    assert await queue.reserve("c1", block_seconds=0.05) == []
    clock.advance(10)
    assert len(await queue.reserve("c1", block_seconds=0.3)) == 1


async def test_dead_letter_keeps_job_and_reason(queue: Queue) -> None:
    await queue.enqueue(job("ev-dead", attempt=5))
    [lease] = await queue.reserve("c1", block_seconds=0.1)
    await queue.dead_letter(lease, lease.job, "max_attempts: apns 503 ServiceUnavailable")
    stats = await queue.stats()
    assert (stats.ready, stats.in_flight, stats.dead) == (0, 0, 1)
    [dead] = await queue.dead_letters()
    assert dead.job.event_id == "ev-dead" and dead.job.attempt == 5
    assert dead.reason == "max_attempts: apns 503 ServiceUnavailable"
    assert await queue.depth() == 0


async def test_redis_group_forgets_long_idle_empty_consumers(redis_prefix: str) -> None:
    from support import REDIS_URL, drop_prefix, redis_or_skip
    from tidings.delivery.queue.redis import GROUP, RedisQueue

    client = await redis_or_skip()
    queue = RedisQueue(REDIS_URL, prefix=redis_prefix)
    try:
        await queue.enqueue(job("a"))
        await queue.enqueue(job("b"))
        [held] = await queue.reserve("holds-a-lease", block_seconds=0.1)
        [done] = await queue.reserve("finished", block_seconds=0.1)
        await queue.ack(done)
        await asyncio.sleep(0.05)
        assert await queue.forget_idle_consumers(idle_seconds=0.01) == 1
        names = {c["name"] for c in await client.xinfo_consumers(queue.stream, GROUP)}
        assert names == {b"holds-a-lease"}  # a consumer with a pending lease is kept whatever its age
        await queue.ack(held)
    finally:
        await queue.close()
        await drop_prefix(client, redis_prefix)
        await client.aclose()


async def test_redis_entry_no_worker_can_read_is_dead_lettered_not_retried_forever(redis_prefix: str) -> None:
    from support import REDIS_URL, drop_prefix, redis_or_skip
    from tidings.delivery.queue.redis import RedisQueue

    client = await redis_or_skip()
    queue = RedisQueue(REDIS_URL, prefix=redis_prefix)
    try:
        await queue.enqueue(job("good"))
        await client.xadd(queue.stream, {"job": b"{not json"})
        leases = await queue.reserve("c1", count=5, block_seconds=0.1)
        assert [lease.job.event_id for lease in leases] == ["good"]
        stats = await queue.stats()
        assert (stats.in_flight, stats.dead) == (1, 1)
        [dead] = await queue.dead_letters()
        assert dead.reason.startswith("undecodable job") and dead.job.data == {"raw": "{not json"}
    finally:
        await queue.close()
        await drop_prefix(client, redis_prefix)
        await client.aclose()


async def test_a_full_memory_queue_refuses_rather_than_grows() -> None:
    import pytest

    from tidings.delivery.queue.memory import MemoryQueue
    from tidings.errors import BusUnavailable

    queue = MemoryQueue(QueueOptions(max_jobs=2))
    await queue.enqueue(job("a"))
    await queue.enqueue(job("b"), delay=60)
    with pytest.raises(BusUnavailable, match="full"):
        await queue.enqueue(job("c"))
    [lease] = await queue.reserve("c1", block_seconds=0.1)
    await queue.retry(lease, lease.job, 0)  # an accepted job is never refused on its way back
    assert await queue.depth() == 2


async def test_redis_down_is_bus_unavailable_for_the_publisher() -> None:
    import pytest

    from tidings.delivery.queue.redis import RedisQueue
    from tidings.errors import BusUnavailable

    queue = RedisQueue("redis://127.0.0.1:1/0", prefix="nowhere")
    try:
        with pytest.raises(BusUnavailable, match="push queue unavailable"):
            await queue.enqueue(job())
    finally:
        await queue.close()


async def test_dead_letters_can_be_requeued_at_attempt_one(queue: Queue) -> None:
    for name in ("a", "b", "c"):
        await queue.enqueue(job(name, attempt=5, device_ids=("d1",)))
    for lease in await queue.reserve("c1", count=3, block_seconds=0.1):
        await queue.dead_letter(lease, lease.job, "gave up")
    assert await queue.requeue_dead(limit=2) == 2
    assert (await queue.stats()).dead == 1
    again = await queue.reserve("c1", count=5, block_seconds=0.3)
    assert sorted(lease.job.event_id for lease in again) == ["a", "b"]  # the oldest first
    assert {(lease.job.attempt, lease.job.device_ids) for lease in again} == {(1, ("d1",))}
    assert await queue.requeue_dead() == 1


async def test_worker_heartbeats_are_counted_while_fresh(queue: Queue, clock: ManualClock) -> None:
    assert await queue.live_workers(60) == 0
    await queue.beat("w1")
    await queue.beat("w2")
    assert await queue.live_workers(60) == 2
    clock.advance(61)
    await queue.beat("w2")
    assert await queue.live_workers(60) == 1


# --- checkpoints: the final answers a leased job already got, per device --------------------------------------

D = "delivered|200||"


async def test_checkpoint_is_read_back_when_the_entry_is_reclaimed(queue: Queue) -> None:
    await queue.enqueue(job())
    [lease] = await queue.reserve("dies", block_seconds=0.1)
    assert await queue.answered(lease) == {}
    await queue.checkpoint(lease, {"d1": D, "d2": "dead_token|410|1700000000.5|Unregistered"})
    await queue.checkpoint(lease, {"d3": 'rejected|400||BadTopic: "x|y"'})
    await queue.checkpoint(lease, {})
    async with asyncio.timeout(5):
        [again] = await queue.reserve("other", block_seconds=2)
    assert again.id == lease.id and again.deliveries == 2
    assert await queue.answered(again) == {
        "d1": D,
        "d2": "dead_token|410|1700000000.5|Unregistered",
        "d3": 'rejected|400||BadTopic: "x|y"',
    }
    await queue.checkpoint(again, {"d4": D})  # the reclaiming worker adds to the same checkpoint
    assert set(await queue.answered(again)) == {"d1", "d2", "d3", "d4"}
    await queue.ack(again)


async def test_checkpoints_belong_to_one_entry(queue: Queue) -> None:
    await queue.enqueue(job("a"))
    await queue.enqueue(job("b"))
    first, second = await queue.reserve("c1", count=2, block_seconds=0.1)
    await queue.checkpoint(first, {"d1": D})
    assert await queue.answered(first) == {"d1": D}
    assert await queue.answered(second) == {}
    await queue.ack(first)
    await queue.ack(second)


@pytest.mark.parametrize("finish", ["ack", "retry", "dead_letter"])
async def test_finishing_a_lease_deletes_its_checkpoint(queue: Queue, finish: str) -> None:
    await queue.enqueue(job())
    [lease] = await queue.reserve("c1", block_seconds=0.1)
    await queue.checkpoint(lease, {"d1": D, "d2": D})
    if finish == "ack":
        await queue.ack(lease)
    elif finish == "retry":
        await queue.retry(lease, lease.job.next_attempt(("d3",)), delay=0)
    else:
        await queue.dead_letter(lease, lease.job, "gave up")
    assert await queue.answered(lease) == {}
    await queue.checkpoint(lease, {"late": D})  # a worker whose lease was finished elsewhere writes late
    assert await queue.answered(lease) == {}
    if finish == "retry":
        [again] = await queue.reserve("c1", block_seconds=0.5)
        assert await queue.answered(again) == {}  # a retry is a new entry, with its own checkpoint
        await queue.ack(again)


async def test_a_narrowed_retry_and_the_checkpoint_compose(queue: Queue) -> None:
    # Attempt 2 of a retry narrowed to four devices: d1 and d2 answered for good, d3 asked to be retried,
    # d4 was in flight when the worker died.
    await queue.enqueue(job(attempt=2, device_ids=("d1", "d2", "d3", "d4")))
    [lease] = await queue.reserve("dies", block_seconds=0.1)
    await queue.checkpoint(lease, {"d1": D, "d2": D})
    async with asyncio.timeout(5):
        [again] = await queue.reserve("other", block_seconds=2)
    answered = await queue.answered(again)
    assert again.job.device_ids is not None
    assert [d for d in again.job.device_ids if d not in answered] == ["d3", "d4"]  # what the reclaim sends
    await queue.checkpoint(again, {"d4": D})
    await queue.retry(again, again.job.next_attempt(("d3",)), delay=0)
    [third] = await queue.reserve("other", block_seconds=0.5)
    assert (third.job.attempt, third.job.device_ids) == (3, ("d3",))
    assert await queue.answered(third) == {}
    await queue.ack(third)
    assert await queue.depth() == 0


async def test_redis_checkpoint_expires_and_no_key_outlives_its_lease(redis_prefix: str) -> None:
    from support import REDIS_URL, drop_prefix, redis_or_skip
    from tidings.delivery.queue.redis import RedisQueue

    client = await redis_or_skip()
    queue = RedisQueue(REDIS_URL, prefix=redis_prefix, options=QueueOptions(checkpoint_ttl=60))
    try:
        await queue.enqueue(job())
        [lease] = await queue.reserve("c1", block_seconds=0.1)
        many = {f"d{i}": D for i in range(2500)} | {'odd "id", with\nquotes': 'skipped||| a "reason"'}
        items = list(many.items())
        await queue.checkpoint(lease, dict(items[:1000]))
        await queue.checkpoint(lease, dict(items[1000:]))
        key = queue.answered_key(lease.id)
        assert 0 < await client.pttl(key) <= 60_000
        assert await queue.answered(lease) == many
        await queue.ack(lease)
        assert await client.exists(key) == 0
        assert [k async for k in client.scan_iter(f"{redis_prefix}:push:answered:*")] == []
    finally:
        await queue.close()
        await drop_prefix(client, redis_prefix)
        await client.aclose()
