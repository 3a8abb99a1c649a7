"""`inbox.changed` on local streams: which streams a change reaches (users, roles, broadcast; topics by the token's
claim; not the dashboard's feed), one count per reader however many changes pile up, the latest counts last,
quiet changes (a mute) told only where the counts moved, and a failing count dropped."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson

from support import ManualClock, parse_frames
from tidings.auth import Principal, TopicGrants
from tidings.inbox import Counts, Reader
from tidings.streams.connection import BufferLimits, Connection
from tidings.streams.inbox_live import InboxLive
from tidings.streams.router import Router

T0 = 1_000_000.0


class Counting:
    """A counts function the test controls: every reader's count is `value`; `gate` holds counts in flight."""

    def __init__(self) -> None:
        self.value = Counts(1, 1)
        self.calls: Counter[Reader] = Counter()
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def __call__(self, reader: Reader) -> Counts:
        self.calls[reader] += 1
        await self.gate.wait()
        if self.fail:
            raise OSError("database down")
        return self.value


def stream(
    router: Router, user: str, *roles: str, topics: tuple[str, ...] = (), endpoint: str = "events"
) -> Connection:
    principal = Principal(user, frozenset(roles), topics=TopicGrants(frozenset(topics)))
    channels = ["*", f"u:{user}", *(f"r:{r}" for r in roles)] if endpoint != "feed" else []
    conn = Connection(
        principal, channels, endpoint=endpoint, limits=BufferLimits(), clock=ManualClock(frozen_at=T0)
    )
    router.add(conn)
    return conn


def told(conn: Connection) -> list[dict[str, int]]:
    frames = parse_frames(b"".join(conn._chunks).decode())
    return [orjson.loads(f.data) for f in frames if f.event == "inbox.changed"]


async def settled(live: InboxLive, counting: Counting) -> None:
    async with asyncio.timeout(5):
        while live._dirty or live._busy:
            await asyncio.sleep(0)
        await asyncio.sleep(0)


async def test_a_change_reaches_the_streams_on_its_channels_and_no_others() -> None:
    router, counting = Router(keepalive=30, idle_timeout=0, clock=ManualClock(frozen_at=T0)), Counting()
    live = InboxLive(router, counting, clock=ManualClock(frozen_at=T0))
    live.start()
    try:
        ann1, ann2, staff = stream(router, "ann"), stream(router, "ann"), stream(router, "bo", "staff")
        reader_of_t, feed = stream(router, "cy", topics=("t.1",)), stream(router, "ann", endpoint="feed")
        live.changed(["u:ann"])
        await settled(live, counting)
        assert told(ann1) == told(ann2) == [{"unseen": 1, "unread": 1, "by_category": {}}]
        assert told(staff) == told(reader_of_t) == told(feed) == []
        assert counting.calls[Reader("ann")] == 1  # two streams of one reader: one count
        live.changed(["r:staff", "t:t.1"])
        await settled(live, counting)
        assert len(told(staff)) == len(told(reader_of_t)) == 1 and len(told(ann1)) == 1
        live.changed(["*"])
        await settled(live, counting)
        assert [len(told(c)) for c in (ann1, ann2, staff, reader_of_t, feed)] == [2, 2, 2, 2, 0]
    finally:
        await live.stop()


async def test_changes_piling_up_are_counted_once_more_and_the_latest_counts_come_last() -> None:
    router, counting = Router(keepalive=30, idle_timeout=0, clock=ManualClock(frozen_at=T0)), Counting()
    live = InboxLive(router, counting, clock=ManualClock(frozen_at=T0))
    live.start()
    try:
        ann = stream(router, "ann")
        counting.gate.clear()
        live.changed(["u:ann"])
        async with asyncio.timeout(5):
            while not counting.calls:
                await asyncio.sleep(0)
        for n in range(50):  # while the first count runs
            counting.value = Counts(n, n)
            live.changed(["u:ann"])
        counting.gate.set()
        await settled(live, counting)
        assert counting.calls[Reader("ann")] == 2
        assert told(ann)[-1] == {"unseen": 49, "unread": 49, "by_category": {}}
    finally:
        await live.stop()


async def test_a_quiet_change_is_told_only_where_the_counts_moved_and_a_failed_count_is_dropped() -> None:
    router, counting = Router(keepalive=30, idle_timeout=0, clock=ManualClock(frozen_at=T0)), Counting()
    live = InboxLive(router, counting, clock=ManualClock(frozen_at=T0))
    live.start()
    try:
        ann, bo = stream(router, "ann"), stream(router, "bo")
        live.changed(["u:bo"], quiet=True)  # never told anything (an app without an inbox): nothing to say
        live.changed(["u:ann"])
        await settled(live, counting)
        assert len(told(ann)) == 1 and told(bo) == []
        live.changed(["u:ann"], quiet=True)  # the same counts
        await settled(live, counting)
        assert len(told(ann)) == 1
        counting.value = Counts(0, 0)
        live.changed(["u:ann"], quiet=True)  # a mute moved them
        await settled(live, counting)
        assert told(ann)[-1]["unread"] == 0
        counting.fail = True
        live.changed(["u:ann"])
        await settled(live, counting)
        assert len(told(ann)) == 2 and not live._busy  # dropped, and the workers carry on
        counting.fail = False
        live.changed(["u:ann"])
        await settled(live, counting)
        assert len(told(ann)) == 3
    finally:
        await live.stop()
