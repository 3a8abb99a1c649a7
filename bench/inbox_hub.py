"""The hub's side of the inbox benchmark: what `hub.inbox.counts` and `hub.publish` cost on the same data set.

- Counts as the hub answers them: from its counts cache while nothing changed (warm), after a change to the
  reader's inbox (a new item for the user, or a role item: one query, the preferences still known), and a
  user's first count (the preferences loaded too), beside the store's own count in the same group (operations
  of a group take turns, so foreign load on the shared host hits all alike).
- Publishing an event kept in inboxes through `hub.publish` (bus, the transaction around it, the
  announcement), to one user, a role and everyone, beside the same event not kept.
- The live fan-out: one broadcast item with 1,000 users' streams open on this process, until every stream
  was told its new counts (`inbox.changed`: one count per reader).

The hub runs on the memory bus without a worker, so the figures are the database's and the hub's own.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.inbox_load import ROLE, DataSet
from tidings import Hub, Settings
from tidings.auth import Principal
from tidings.inbox import NewItem, Reader

Op = Callable[[], Awaitable[object]]
RoundRobin = Callable[[list[tuple[str, Op, str]], int], Awaitable[list[Any]]]
ONLINE = 1_000


def _settings(url: str, data_dir: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        env="production",
        data_dir=data_dir,
        database_url=url,
        jwt_secret="bench-secret-0123456789abcdef0123456789",
        publish_key="bench-publish-key",
        worker_in_process=False,
        log_level="warning",
    )


async def _counts_ops(hub: Hub, users: int) -> list[tuple[str, Op, str]]:
    rng = random.Random(21)
    picked = rng.sample(range(users), 600)
    warm = [Reader(f"user-{n:05d}") for n in picked[:200]]  # counted once before timing, never changed
    changing = [Reader(f"user-{n:05d}") for n in picked[200:400]]
    staff = [Reader(f"user-{n:05d}", frozenset({ROLE})) for n in picked[400:]]
    cache = hub.inbox.cache
    for reader in warm + changing + staff:
        await hub.inbox.counts(reader)

    async def after_item() -> object:
        reader = rng.choice(changing)
        cache.changed([f"u:{reader.user_id}"])  # what the announcement of a new item for them does
        return await hub.inbox.counts(reader)

    async def after_role_item() -> object:
        cache.changed([f"r:{ROLE}"])
        return await hub.inbox.counts(rng.choice(staff))

    async def first(reader_of: Callable[[int], Reader] = lambda n: Reader(f"user-{n:05d}")) -> object:
        return await hub.inbox.counts(reader_of(rng.randrange(users)))

    store = hub.inbox.store
    return [
        ("store counts, reader with role (no cache)", lambda: store.counts(rng.choice(staff)), "reference"),
        ("hub counts, nothing changed (cached)", lambda: hub.inbox.counts(rng.choice(warm)), "200 readers"),
        ("hub counts after an item for the reader", after_item, "1 query"),
        ("hub counts after a role item, reader with role", after_role_item, "1 query"),
        ("hub counts, a user's first (cold)", first, "preferences + counts"),
    ]


def _publish_ops(hub: Hub) -> list[tuple[str, Op, str]]:
    def kept(to: dict[str, Any], inbox: bool = True) -> Op:
        event: dict[str, Any] = {"type": "orders.updated", "to": to, "data": {"order_id": 1}}
        if inbox:
            event["inbox"] = {
                "title": "Order shipped",
                "body": "It left the warehouse.",
                "category": "orders",
            }
        return lambda: hub.publish_many([event])

    item = NewItem(
        event_id="1-0", type="orders.updated", title="Order shipped", body="It left the warehouse."
    )
    return [
        ("store add to one user", lambda: hub.inbox.store.add(item, users=["user-00001"]), "reference"),
        ("hub.publish to one user, not kept", kept({"users": ["user-00001"]}, inbox=False), "reference"),
        ("hub.publish to one user, kept", kept({"users": ["user-00001"]}), ""),
        (f"hub.publish to role {ROLE!r}, kept", kept({"roles": [ROLE]}), ""),
        ("hub.publish to everyone, kept", kept({"broadcast": True}), ""),
    ]


async def _fan_out(hub: Hub, users: int, rounds: int = 3) -> list[float]:
    """ms from publishing a broadcast item until all ONLINE local streams were told their counts."""
    for n in range(ONLINE):
        principal = Principal(user_id=f"user-{n * (users // ONLINE):05d}")
        hub.open_stream(principal, [], endpoint="events", limit=0, ip="", replaying=False)
    live, took = hub.inbox.live, []
    for _ in range(rounds):
        before = live.sent
        t0 = time.perf_counter()
        await hub.publish("notes.posted", to={"broadcast": True}, inbox={"title": "To everyone"})
        while live.sent < before + ONLINE:
            await _tick()
        took.append((time.perf_counter() - t0) * 1000)
    return took


async def _tick() -> None:
    import asyncio

    await asyncio.sleep(0.001)  # polling the counter of frames sent (a benchmark, not a test)


async def hub_rows(url: str, data: DataSet, samples: int, round_robin: RoundRobin, row: Any) -> list[Any]:
    with tempfile.TemporaryDirectory() as tmp:
        hub = Hub(_settings(url, Path(tmp)))
        async with hub.lifespan():
            rows = list(await round_robin(await _counts_ops(hub, data.shape.users), samples))
            rows += await round_robin(_publish_ops(hub), samples // 2)
            took = sorted(await _fan_out(hub, data.shape.users))
            note = f"{ONLINE} streams of {ONLINE} users: one count per reader, 4 at a time"
            what = f"live: broadcast item → inbox.changed on {ONLINE} streams"
            rows.append(row(what, len(took), took[len(took) // 2], took[-1], took[-1], note))
    return rows
