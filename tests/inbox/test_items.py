"""Items and audiences: direct, role, topic and broadcast items, stored once, merged into inboxes at read time."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from inbox.helpers import item, reader, table_rows, titles
from registry.helpers import T0
from tidings.inbox import InboxStore


async def test_a_direct_item_reaches_only_its_users(store: InboxStore) -> None:
    await store.add(item("for alice"), users=["alice"])
    await store.add(item("for bob"), users=["bob"])
    assert await titles(store, reader("alice")) == ["for alice"]
    assert await titles(store, reader("bob")) == ["for bob"]
    assert await titles(store, reader("carol")) == []


async def test_an_event_to_several_users_and_a_role_is_one_item_with_one_entry_per_channel(
    store: InboxStore, engine: AsyncEngine
) -> None:
    item_id = await store.add(item("shipped"), users=["a", "b"], roles=["admin"])
    assert await table_rows(engine) == {
        "inbox_items": 1, "inbox_entries": 3, "inbox_marks": 0, "inbox_cursors": 0,
    }  # fmt: skip
    for who in (reader("a"), reader("b"), reader("someone", "admin")):
        page = await store.list(who)
        assert [i.id for i in page.items] == [item_id]


async def test_a_role_wide_item_is_one_row_whatever_the_number_of_members(
    store: InboxStore, engine: AsyncEngine
) -> None:
    await store.add(item("announcement"), roles=["staff"])
    assert (await table_rows(engine))["inbox_entries"] == 1
    for n in range(20):
        assert await titles(store, reader(f"member-{n}", "staff")) == ["announcement"]


async def test_role_items_are_seen_only_while_the_reading_token_holds_the_role(store: InboxStore) -> None:
    await store.add(item("for admins"), roles=["admin"])
    await store.add(item("for alice"), users=["alice"])
    assert await titles(store, reader("alice", "admin")) == ["for alice", "for admins"]
    # the same user with a token that no longer carries the role: the role item is not theirs
    assert await titles(store, reader("alice")) == ["for alice"]
    assert (await store.counts(reader("alice"))).unread == 1
    assert (await store.counts(reader("alice", "admin"))).unread == 2


async def test_topic_items_reach_readers_following_the_topic(store: InboxStore) -> None:
    await store.add(item("match started"), topics=["match-7"])
    assert await titles(store, reader("alice", topics=("match-7",))) == ["match started"]
    assert await titles(store, reader("alice", topics=("match-8",))) == []


async def test_broadcast_items_reach_everyone(store: InboxStore, engine: AsyncEngine) -> None:
    await store.add(item("maintenance tonight"), broadcast=True)
    assert (await table_rows(engine))["inbox_entries"] == 1
    assert await titles(store, reader("anyone")) == ["maintenance tonight"]
    assert await titles(store, reader("someone else", "admin")) == ["maintenance tonight"]


async def test_an_item_reaching_a_reader_through_two_channels_appears_once(store: InboxStore) -> None:
    await store.add(item("both"), users=["alice"], roles=["admin"], topics=["ops"])
    await store.add(item("other"), users=["alice"])
    who = reader("alice", "admin", topics=("ops",))
    assert await titles(store, who) == ["other", "both"]
    assert (await store.counts(who)).unread == 2


async def test_the_inbox_is_newest_first_across_channels(store: InboxStore) -> None:
    await store.add(item("1 direct"), users=["alice"])
    await store.add(item("2 role"), roles=["admin"])
    await store.add(item("3 broadcast"), broadcast=True)
    await store.add(item("4 direct"), users=["alice"])
    assert await titles(store, reader("alice", "admin")) == ["4 direct", "3 broadcast", "2 role", "1 direct"]


async def test_an_item_keeps_everything_it_was_given(store: InboxStore) -> None:
    occurred = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    added = await store.add(
        item(
            "Order 7 shipped",
            event_id="1795333882889-0",
            type="order.shipped",
            body="It left the warehouse.",
            url="https://app.example/orders/7",
            icon="https://app.example/truck.png",
            category="orders",
            data={"order_id": 7, "tags": ["a", "b"]},
            scope="orders",
            critical=True,
            occurred_at=occurred,
        ),
        users=["alice"],
    )
    [got] = (await store.list(reader("alice"))).items
    assert (got.id, got.event_id, got.type, got.title, got.body) == (
        added, "1795333882889-0", "order.shipped", "Order 7 shipped", "It left the warehouse.",
    )  # fmt: skip
    assert (got.url, got.icon, got.category, got.scope, got.critical) == (
        "https://app.example/orders/7", "https://app.example/truck.png", "orders", "orders", True,
    )  # fmt: skip
    assert got.data == {"order_id": 7, "tags": ["a", "b"]}
    assert got.occurred_at == occurred
    assert got.created_at == datetime.fromtimestamp(T0, UTC)
    assert (got.seen, got.read, got.archived) == (False, False, False)


async def test_occurred_at_defaults_to_the_store_clock(store: InboxStore) -> None:
    await store.add(item("now"), users=["alice"])
    [got] = (await store.list(reader("alice"))).items
    assert got.occurred_at == got.created_at == datetime.fromtimestamp(T0, UTC)


async def test_add_many_stores_a_batch_in_order_in_one_transaction(store: InboxStore) -> None:
    ids = await store.add_many(
        [(item("first"), ["u:alice"]), (item("second"), ["r:admin"]), (item("third"), ["u:alice", "*"])]
    )
    assert [int(i) for i in ids] == sorted(int(i) for i in ids)
    assert await titles(store, reader("alice", "admin")) == ["third", "second", "first"]


async def test_ids_are_never_reused_after_the_newest_item_is_deleted(
    store: InboxStore, clock: object
) -> None:
    # Cursors say "everything up to id X": an id handed out again would arrive already read.
    first = await store.add(item("old"), users=["alice"])
    await store.mark(reader("alice"), "read", "all")
    clock.advance(31 * 86400)  # type: ignore[attr-defined]
    assert (await store.prune()).expired == 1
    second = await store.add(item("new"), users=["alice"])
    assert int(second) > int(first)
    assert (await store.counts(reader("alice"))).unread == 1
