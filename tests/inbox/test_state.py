"""Read state: seen, read, archived by id and for `all`, and what the counts say after each."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from inbox.helpers import item, reader, table_rows, titles
from tidings.inbox import Counts, InboxStore, MarkResult


async def _three(store: InboxStore) -> list[str]:
    return [
        await store.add(item(f"n{k}", category="orders" if k else None), users=["alice"]) for k in range(3)
    ]


async def test_a_fresh_inbox_is_all_unseen_and_unread(store: InboxStore) -> None:
    await _three(store)
    assert await store.counts(reader("alice")) == Counts(unseen=3, unread=3, by_category={"orders": 2})
    assert await store.counts(reader("nobody")) == Counts(unseen=0, unread=0, by_category={})


async def test_marking_seen_clears_unseen_but_not_unread(store: InboxStore) -> None:
    ids = await _three(store)
    assert await store.mark(reader("alice"), "seen", ids[:2]) == MarkResult("seen", 2)
    assert await store.counts(reader("alice")) == Counts(unseen=1, unread=3, by_category={"orders": 2})
    items = {i.id: i for i in (await store.list(reader("alice"))).items}
    assert [(items[i].seen, items[i].read) for i in ids] == [(True, False), (True, False), (False, False)]


async def test_marking_read_implies_seen(store: InboxStore) -> None:
    ids = await _three(store)
    await store.mark(reader("alice"), "read", [ids[1]])
    assert await store.counts(reader("alice")) == Counts(unseen=2, unread=2, by_category={"orders": 1})
    [read] = [i for i in (await store.list(reader("alice"))).items if i.id == ids[1]]
    assert (read.seen, read.read, read.archived) == (True, True, False)


async def test_marking_twice_keeps_the_first_mark(store: InboxStore, engine: AsyncEngine) -> None:
    ids = await _three(store)
    await store.mark(reader("alice"), "read", ids)
    await store.mark(reader("alice"), "read", ids)
    await store.mark(reader("alice"), "seen", ids)
    assert (await table_rows(engine))["inbox_marks"] == 3
    assert (await store.counts(reader("alice"))).unread == 0


async def test_archived_items_leave_the_default_listing_and_the_counts(store: InboxStore) -> None:
    ids = await _three(store)
    await store.mark(reader("alice"), "archive", [ids[2]])
    assert await titles(store, reader("alice")) == ["n1", "n0"]
    assert await titles(store, reader("alice"), archived=True) == ["n2"]
    assert (await store.list(reader("alice"), archived=True)).items[0].archived
    assert await store.counts(reader("alice")) == Counts(unseen=2, unread=2, by_category={"orders": 1})


async def test_mark_all_read_moves_one_cursor_and_leaves_later_items_unread(
    store: InboxStore, engine: AsyncEngine
) -> None:
    ids = await _three(store)
    result = await store.mark(reader("alice"), "read", "all")
    assert result == MarkResult("read", 0, ids[-1])
    rows = await table_rows(engine)
    assert (rows["inbox_cursors"], rows["inbox_marks"]) == (1, 0)  # one cursor row, no per-item rows
    assert await store.counts(reader("alice")) == Counts(unseen=0, unread=0, by_category={})
    assert all(i.read and i.seen for i in (await store.list(reader("alice"))).items)
    await store.add(item("later", category="orders"), users=["alice"])
    assert await store.counts(reader("alice")) == Counts(unseen=1, unread=1, by_category={"orders": 1})


async def test_mark_all_read_covers_role_items_for_that_reader_only(store: InboxStore) -> None:
    await store.add(item("team news"), roles=["staff"])
    await store.mark(reader("alice", "staff"), "read", "all")
    assert (await store.counts(reader("alice", "staff"))).unread == 0
    assert (await store.counts(reader("bob", "staff"))).unread == 1


async def test_mark_all_seen_keeps_items_unread(store: InboxStore) -> None:
    await _three(store)
    await store.mark(reader("alice"), "seen", "all")
    assert await store.counts(reader("alice")) == Counts(unseen=0, unread=3, by_category={"orders": 2})


async def test_mark_all_read_up_to_the_newest_item_shown(store: InboxStore) -> None:
    ids = await _three(store)
    # the client showed n0..n1 and n2 arrived before the click: n2 stays unread
    assert (await store.mark(reader("alice"), "read", "all", up_to=ids[1])).up_to == ids[1]
    assert await store.counts(reader("alice")) == Counts(unseen=1, unread=1, by_category={"orders": 1})


async def test_the_read_cursor_never_moves_back(store: InboxStore) -> None:
    ids = await _three(store)
    await store.mark(reader("alice"), "read", "all")
    await store.mark(reader("alice"), "read", "all", up_to=ids[0])
    assert (await store.counts(reader("alice"))).unread == 0


async def test_mark_all_on_an_empty_store_is_a_no_op(store: InboxStore, engine: AsyncEngine) -> None:
    assert await store.mark(reader("alice"), "read", "all") == MarkResult("read", 0, None)
    assert (await table_rows(engine))["inbox_cursors"] == 0


async def test_archive_all_empties_the_default_listing(store: InboxStore) -> None:
    await _three(store)
    await store.mark(reader("alice"), "archive", "all")
    assert await titles(store, reader("alice")) == []
    assert await titles(store, reader("alice"), archived=True) == ["n2", "n1", "n0"]
    assert (await store.counts(reader("alice"))).unread == 0
    await store.add(item("new"), users=["alice"])
    assert await titles(store, reader("alice")) == ["new"]


async def test_unread_only_lists_what_the_counts_count(store: InboxStore) -> None:
    ids = await _three(store)
    await store.mark(reader("alice"), "read", [ids[1]])
    assert await titles(store, reader("alice"), unread_only=True) == ["n2", "n0"]
    await store.mark(reader("alice"), "read", "all")
    await store.add(item("n3"), users=["alice"])
    assert await titles(store, reader("alice"), unread_only=True) == ["n3"]


async def test_a_category_filter_lists_that_category_only(store: InboxStore) -> None:
    await _three(store)
    assert await titles(store, reader("alice"), category="orders") == ["n2", "n1"]
    assert await titles(store, reader("alice"), category="billing") == []


async def test_excluded_scopes_do_not_count_unless_critical(store: InboxStore) -> None:
    await store.add(item("chatty", scope="chat"), users=["alice"])
    await store.add(item("urgent", scope="chat", critical=True), users=["alice"])
    await store.add(item("order", scope="orders"), users=["alice"])
    await store.add(item("plain"), users=["alice"])
    muted = {"chat"}
    assert (await store.counts(reader("alice"))).unread == 4
    assert (await store.counts(reader("alice"), exclude_scopes=muted)).unread == 3
    assert await titles(store, reader("alice"), exclude_scopes=muted) == ["plain", "order", "urgent"]


async def test_a_muted_type_silences_items_of_every_scope_of_that_type(store: InboxStore) -> None:
    await store.add(item("conversation 1", type="message.new", scope="conversation:1"), users=["alice"])
    await store.add(item("conversation 2", type="message.new", scope="conversation:2"), users=["alice"])
    await store.add(item("alarm", type="message.new", scope="conversation:3", critical=True), roles=["staff"])
    await store.add(item("order", type="orders.updated", scope="orders.updated"), roles=["staff"])
    alice = reader("alice", "staff")
    assert (await store.counts(alice, exclude_scopes={"message.new"})) == Counts(unseen=2, unread=2)
    assert (await store.counts(alice, exclude_scopes={"conversation:2"})).unread == 3
    assert await titles(store, alice, exclude_scopes={"message.new", "orders.updated"}) == ["alarm"]


async def test_counts_are_per_named_category(store: InboxStore) -> None:
    for category in ("orders", "orders", "chat", None):
        await store.add(item(f"{category}", category=category), users=["alice"])
    await store.add(item("team", category="chat"), roles=["staff"])
    counts = await store.counts(reader("alice", "staff"))
    assert counts == Counts(unseen=5, unread=5, by_category={"orders": 2, "chat": 2})
