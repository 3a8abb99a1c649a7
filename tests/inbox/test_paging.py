"""Keyset paging: newest first, stable while items arrive, read state changing; the inbox is the newest `cap`."""

from __future__ import annotations

from inbox.helpers import CAP, item, reader, titles
from tidings.inbox import InboxStore


async def test_pages_cover_the_inbox_once_in_order(store: InboxStore) -> None:
    for k in range(10):
        await store.add(item(f"n{k}"), users=["alice"])
    page = await store.list(reader("alice"), limit=4)
    assert [i.title for i in page.items] == ["n9", "n8", "n7", "n6"]
    page = await store.list(reader("alice"), limit=4, cursor=page.next_cursor)
    assert [i.title for i in page.items] == ["n5", "n4", "n3", "n2"]
    page = await store.list(reader("alice"), limit=4, cursor=page.next_cursor)
    assert [i.title for i in page.items] == ["n1", "n0"]
    assert page.next_cursor is None


async def test_a_full_last_page_has_no_next_cursor(store: InboxStore) -> None:
    for k in range(4):
        await store.add(item(f"n{k}"), users=["alice"])
    page = await store.list(reader("alice"), limit=4)
    assert len(page.items) == 4
    assert page.next_cursor is None


async def test_paging_is_stable_while_new_items_arrive(store: InboxStore) -> None:
    for k in range(9):
        await store.add(item(f"old{k}"), users=["alice"])
    await store.add(item("old-role"), roles=["staff"])
    who = reader("alice", "staff")
    seen: list[str] = []
    cursor = None
    arrived = 0
    while True:
        page = await store.list(who, limit=3, cursor=cursor)
        seen += [i.title for i in page.items]
        # between pages, new items land on every channel the reader holds
        await store.add(item(f"new{arrived}"), users=["alice"])
        await store.add(item(f"new-role{arrived}"), roles=["staff"])
        arrived += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ["old-role", *(f"old{k}" for k in reversed(range(9)))]
    # the new items are all on top, for the next first page
    first = await store.list(who, limit=2)
    assert [i.title for i in first.items] == [f"new-role{arrived - 1}", f"new{arrived - 1}"]


async def test_unread_paging_is_stable_while_items_are_read(store: InboxStore) -> None:
    ids = [await store.add(item(f"n{k}"), users=["alice"]) for k in range(8)]
    page = await store.list(reader("alice"), limit=3, unread_only=True)
    assert [i.title for i in page.items] == ["n7", "n6", "n5"]
    # the reader opens the items on the first page and one further down
    await store.mark(reader("alice"), "read", [ids[7], ids[6], ids[5], ids[3]])
    rest = await titles(store, reader("alice"), unread_only=True, limit=3)
    page2 = await store.list(reader("alice"), limit=3, unread_only=True, cursor=page.next_cursor)
    assert [i.title for i in page2.items] == ["n4", "n2", "n1"]
    assert rest == ["n4", "n2", "n1", "n0"]


async def test_the_inbox_is_the_newest_cap_items_across_channels(store: InboxStore) -> None:
    for k in range(CAP):
        await store.add(item(f"direct{k}"), users=["alice"])
    for k in range(5):
        await store.add(item(f"role{k}"), roles=["staff"])
    who = reader("alice", "staff")
    listed = await titles(store, who)
    assert len(listed) == CAP
    assert listed[:5] == [f"role{k}" for k in reversed(range(5))]
    assert listed[-1] == "direct5"  # the 5 oldest direct items fell out of the window
    assert (await store.counts(who)).unread == CAP
    # without the role the window holds the direct items only, still capped
    assert len(await titles(store, reader("alice"))) == CAP


async def test_counts_stay_within_the_cap_and_agree_with_the_listing(store: InboxStore) -> None:
    ids = [await store.add(item(f"n{k}"), users=["alice"]) for k in range(CAP + 10)]
    assert (await store.counts(reader("alice"))).unread == CAP
    await store.mark(reader("alice"), "read", ids[-3:])
    assert (await store.counts(reader("alice"))).unread == CAP - 3
    assert len(await titles(store, reader("alice"), unread_only=True)) == CAP - 3
