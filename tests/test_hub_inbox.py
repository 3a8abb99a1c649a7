"""`hub.inbox` through `hub.publish`, on SQLite and PostgreSQL: direct, role, topic and broadcast items (a shared
item stored once), membership by the reading token, mutes, the counts cache, and what a database failure on
publish does (a 503 before anything is sent; after the send, an error naming the events)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from fixtures.db import PG_ADMIN_DSN
from support import ManualClock, free_port
from tidings import Hub, Settings
from tidings.bus.memory import MemoryBus
from tidings.errors import InboxNotStored, InvalidEvent, NotStarted, StoreUnavailable
from tidings.events import EventIn
from tidings.inbox import Counts, Reader
from tidings.inbox.tables import inbox_entries, inbox_items
from tidings.policy.preferences import ScopePrefs
from tidings.wire import Envelope


@pytest.fixture
async def hub(make_settings: Callable[..., Settings], migrated_url: str) -> AsyncIterator[Hub]:
    hub = Hub(make_settings(database_url=migrated_url))
    async with hub.lifespan():
        yield hub


def routed(hub: Hub) -> list[Envelope]:
    """Every event this hub's router handles from now on (what streams would get)."""
    seen: list[Envelope] = []
    hub.streams.taps.append(lambda envelope, _recipients: seen.append(envelope))
    return seen


async def rows(hub: Hub) -> tuple[int, int]:
    async with hub.inbox.store.engine.connect() as conn:
        items = (await conn.execute(select(func.count()).select_from(inbox_items))).scalar_one()
        entries = (await conn.execute(select(func.count()).select_from(inbox_entries))).scalar_one()
    return items, entries


async def titles(hub: Hub, reader: Reader | str) -> list[str]:
    return [item.title for item in (await hub.inbox.list(reader, limit=100)).items]


def keep(title: str, to: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"type": "notes.posted", "to": to, "inbox": {"title": title, **fields.pop("inbox", {})}, **fields}


async def test_direct_role_topic_and_broadcast_items_are_kept_once_each(hub: Hub) -> None:
    ids = await hub.publish_many(
        [
            keep("for two", {"users": ["alice", "bob"]}),
            keep("for staff", {"roles": ["staff"]}),
            keep("for readers of t", {"topics": ["t"]}),
            keep("for everyone", {"broadcast": True}),
            {"type": "notes.posted", "to": {"users": ["alice"]}},  # not kept
        ]
    )
    assert await rows(hub) == (4, 5)  # four items; the shared ones one entry each
    alice = Reader("alice", frozenset({"staff"}), frozenset({"t"}))
    assert await titles(hub, alice) == ["for everyone", "for readers of t", "for staff", "for two"]
    assert await titles(hub, "bob") == ["for everyone", "for two"]
    assert await titles(hub, "carol") == ["for everyone"]
    page = await hub.inbox.list(alice)
    assert [item.event_id for item in page.items] == ids[3::-1]
    assert await hub.inbox.counts(alice) == Counts(unseen=4, unread=4)


async def test_inbox_true_takes_title_and_body_from_the_push_and_an_object_wins_over_it(hub: Hub) -> None:
    push = {"mode": "alert", "title": "Order shipped", "body": "It left the warehouse"}
    await hub.publish("orders.shipped", {"order_id": 7}, to={"users": ["ann"]}, push=push, inbox=True)
    await hub.publish(
        "orders.shipped",
        to={"users": ["ann"]},
        push=push,
        inbox={"title": "Shipped!", "url": "/orders/8", "category": "orders", "data": {"order_id": 8}},
    )
    newer, older = (await hub.inbox.list("ann")).items
    assert (older.title, older.body, older.url, older.category) == ("Order shipped", "It left the warehouse",
                                                                   None, None)  # fmt: skip
    assert (newer.title, newer.body, newer.url, newer.category) == ("Shipped!", "It left the warehouse",
                                                                   "/orders/8", "orders")  # fmt: skip
    assert newer.data == {"order_id": 8} and newer.type == "orders.shipped"
    assert (await hub.inbox.counts("ann")).by_category == {"orders": 1}


async def test_an_inbox_item_without_text_or_with_a_script_link_is_refused_and_nothing_is_sent(
    hub: Hub,
) -> None:
    seen = routed(hub)
    with pytest.raises(InvalidEvent) as refused:
        await hub.publish_many(
            [keep("ok", {"users": ["a"]}), {"type": "a.b", "to": {"users": ["a"]}, "inbox": True}]
        )
    assert refused.value.field == "[1].inbox"
    with pytest.raises(InvalidEvent) as refused:
        await hub.publish("a.b", to={"users": ["a"]}, inbox={"title": "x", "url": "javascript:alert(1)"})
    assert refused.value.field == "inbox.url"
    assert seen == [] and await rows(hub) == (0, 0)


async def test_a_role_member_sees_role_items_only_while_their_token_holds_the_role(
    hub: Hub, token: Callable[..., str]
) -> None:
    await hub.publish_many([keep("staff memo", {"roles": ["staff"]}), keep("mine", {"users": ["ann"]})])
    with_role = await hub.authenticate(token("ann", "staff"))
    without = await hub.authenticate(token("ann"))
    assert await titles(hub, Reader.of(with_role)) == ["mine", "staff memo"]
    assert await titles(hub, Reader.of(without)) == ["mine"]
    assert (await hub.inbox.counts(with_role)).unread == 2
    assert (await hub.inbox.counts(without)).unread == 1
    await hub.inbox.mark(with_role, "read", "all")  # her read state is hers, whichever token reads it
    assert (await hub.inbox.counts(without)).unread == 0


async def test_a_topic_item_is_read_by_tokens_naming_the_topic_exactly(
    hub: Hub, token: Callable[..., str]
) -> None:
    await hub.publish_many([keep("on orders.42", {"topics": ["orders.42"]})])
    named = await hub.authenticate(token("ann", topics=["orders.42"]))
    pattern = await hub.authenticate(token("ann", topics=["orders.*"]))
    assert await titles(hub, named) == ["on orders.42"]
    assert await titles(hub, pattern) == []


async def test_a_muted_scope_does_not_raise_the_unread_count_unless_critical(hub: Hub) -> None:
    await hub.preferences.put_scope("ann", "conversation:1", ScopePrefs(muted=True))
    await hub.preferences.put_scope("ann", "billing.due", ScopePrefs(muted=True))
    await hub.publish_many(
        [
            keep("chatter", {"users": ["ann"]}, scope="conversation:1"),
            keep("alarm", {"users": ["ann"]}, scope="conversation:1", critical=True),
            keep("bill", {"users": ["ann"]}, type="billing.due", scope="account:9"),  # muted by its type
            keep("other chat", {"users": ["ann"]}, scope="conversation:2"),
        ]
    )
    assert await hub.inbox.counts("ann") == Counts(unseen=2, unread=2)
    assert await titles(hub, "ann") == ["other chat", "bill", "alarm", "chatter"]  # listed all the same
    await hub.preferences.delete_scope("ann", "conversation:1")  # unmuted: counts again at once
    assert (await hub.inbox.counts("ann")).unread == 3


async def test_counts_are_served_from_the_cache_until_the_inbox_changes(hub: Hub) -> None:
    await hub.publish_many([keep("one", {"users": ["ann"]}), keep("memo", {"roles": ["staff"]})])
    staff = Reader("ann", frozenset({"staff"}))
    cache = hub.inbox.cache
    assert (await hub.inbox.counts(staff)).unread == 2
    misses = cache.misses
    assert (await hub.inbox.counts(staff)).unread == 2
    assert cache.misses == misses  # a hit
    await hub.publish_many([keep("another memo", {"roles": ["staff"]})])  # a role item changes her count
    assert (await hub.inbox.counts(staff)).unread == 3
    [newest, *_] = (await hub.inbox.list(staff)).items
    await hub.inbox.mark(staff, "read", [newest.id])
    assert (await hub.inbox.counts(staff)) == Counts(unseen=2, unread=2)
    assert (await hub.inbox.counts("bob")).unread == 0
    await hub.inbox.add(hub_item("direct, outside publish"), users=["bob"])
    assert (await hub.inbox.counts("bob")).unread == 1


def hub_item(title: str) -> Any:
    from tidings.inbox import NewItem

    return NewItem(event_id="0-1", type="notes.posted", title=title)


async def test_a_database_outage_on_publish_is_a_503_before_anything_is_sent(
    make_settings: Callable[..., Settings],
) -> None:
    dead = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    hub = Hub(make_settings(database_url=dead))
    async with hub.lifespan():
        seen = routed(hub)
        with pytest.raises(StoreUnavailable) as failed:
            await hub.publish("notes.posted", to={"users": ["ann"]}, inbox={"title": "lost?"})
        assert not isinstance(failed.value, InboxNotStored)
        assert seen == []  # not sent: a retry duplicates nothing
        await hub.publish("notes.posted", to={"users": ["ann"]})  # events without an inbox item still go
        assert len(seen) == 1


class TerminatingBus(MemoryBus):
    """Sends, then has PostgreSQL terminate every other connection to `database` (once, when armed)."""

    def __init__(self, database: str) -> None:
        super().__init__()
        self.database = database
        self.armed = False

    async def publish(self, tails: Sequence[bytes]) -> list[str]:
        ids = await super().publish(tails)
        if self.armed:
            self.armed = False
            admin = await asyncpg.connect(PG_ADMIN_DSN)
            try:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    self.database,
                )
            finally:
                await admin.close()
        return ids


@pytest.mark.postgres
async def test_a_database_failure_after_the_send_names_the_events_and_keeps_nothing(
    make_settings: Callable[..., Settings], postgres_server: Any
) -> None:
    postgres_server.require()
    from fixtures.db import _pg_url

    url = _pg_url(postgres_server.create(postgres_server.migrated_template()))
    bus = TerminatingBus(str(make_url(url).database))
    hub = Hub(make_settings(database_url=url), bus=bus)
    async with hub.lifespan():
        seen = routed(hub)
        bus.armed = True
        with pytest.raises(InboxNotStored) as failed:
            await hub.publish_events([EventIn.model_validate(keep("sent, not kept", {"users": ["ann"]}))])
        assert failed.value.event_ids == [seen[0].id]  # the stream got it: the error says which
        assert await rows(hub) == (0, 0)
        await hub.publish("notes.posted", to={"users": ["ann"]}, inbox={"title": "kept"})  # the pool recovers
        assert await titles(hub, "ann") == ["kept"]


async def test_the_runtimes_pruner_deletes_items_past_retention_and_beyond_each_users_cap(
    make_settings: Callable[..., Settings], migrated_url: str
) -> None:
    clock = ManualClock()
    settings = make_settings(
        database_url=migrated_url,
        inbox_retention_days=30,
        inbox_max_items_per_user=3,
        worker_in_process=False,
    )  # no background pruner: this test runs the prune itself
    hub = Hub(settings, clock=clock)
    async with hub.lifespan():
        await hub.publish_many([keep("old memo", {"roles": ["staff"]}), keep("old", {"users": ["ann"]})])
        clock.advance(31 * 86400)
        await hub.publish_many([keep(f"new {n}", {"users": ["ann"]}) for n in range(5)])
        runtime = hub.runtime
        assert runtime is not None
        await runtime.prune_once()  # what its pruner runs every hour (`tidings worker`'s, or the server's)
        assert await rows(hub) == (3, 3)
        assert await titles(hub, Reader("ann", frozenset({"staff"}))) == ["new 4", "new 3", "new 2"]
        assert (await hub.inbox.counts("ann")).unread == 3


async def test_an_event_asking_to_be_kept_is_refused_by_a_hub_that_is_not_started(
    make_settings: Callable[..., Settings],
) -> None:
    hub = Hub(make_settings())
    with pytest.raises(NotStarted):  # not published without its item: that would be a silent loss
        await hub.publish("notes.posted", to={"users": ["ann"]}, inbox={"title": "t"})
