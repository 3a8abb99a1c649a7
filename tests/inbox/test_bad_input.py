"""Bad input is refused with an error naming the field, and nothing changes."""

from __future__ import annotations

import base64
import itertools

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from inbox.helpers import item, reader, state, table_rows
from tidings.errors import TidingsError
from tidings.inbox import (
    MAX_PAGE,
    InboxStore,
    InvalidCursor,
    InvalidInboxInput,
    ItemsNotFound,
    NewItem,
    Reader,
    TooManyIds,
)
from tidings.inbox.models import MAX_READER_NAMES


async def _setup(store: InboxStore) -> tuple[str, str, str]:
    mine = await store.add(item("mine"), users=["alice"])
    theirs = await store.add(item("theirs"), users=["bob"])
    admins = await store.add(item("admins"), roles=["admin"])
    return mine, theirs, admins


@pytest.mark.parametrize("mark", ["seen", "read", "archive"])
async def test_ids_of_someone_elses_items_are_refused_and_nothing_changes(
    store: InboxStore, engine: AsyncEngine, mark: str
) -> None:
    mine, theirs, admins = await _setup(store)
    before = await state(engine)
    with pytest.raises(ItemsNotFound) as caught:
        await store.mark(reader("alice"), mark, [mine, theirs, admins, "999999", "x1"])  # type: ignore[arg-type]
    assert caught.value.ids == ["x1", theirs, admins, "999999"]
    assert isinstance(caught.value, TidingsError)
    assert await state(engine) == before  # `mine` was not marked either: all or nothing
    assert (await store.counts(reader("alice"))).unread == 1


async def test_a_role_item_is_markable_only_with_the_role(store: InboxStore) -> None:
    _, _, admins = await _setup(store)
    with pytest.raises(ItemsNotFound):
        await store.mark(reader("alice"), "read", [admins])
    await store.mark(reader("alice", "admin"), "read", [admins])
    assert (await store.counts(reader("alice", "admin"))).unread == 1


async def test_more_ids_than_the_budget_are_refused_before_any_work(
    store: InboxStore, engine: AsyncEngine
) -> None:
    mine, _, _ = await _setup(store)
    before = await state(engine)
    with pytest.raises(TooManyIds) as caught:
        await store.mark(reader("alice"), "read", [mine] * 51)
    assert (caught.value.field, caught.value.limit) == ("ids", 50)
    # an endless iterable is cut at the budget instead of being read to the end
    with pytest.raises(TooManyIds):
        await store.mark(reader("alice"), "read", (str(n) for n in itertools.count(1)))
    assert await state(engine) == before


async def test_the_budget_itself_is_accepted(store: InboxStore) -> None:
    ids = [await store.add(item(f"n{k}"), users=["alice"]) for k in range(50)]
    assert (await store.mark(reader("alice"), "read", ids)).items == 50
    assert (await store.counts(reader("alice"))).unread == 0


async def test_a_lone_string_is_not_a_list_of_ids(store: InboxStore) -> None:
    mine, _, _ = await _setup(store)
    with pytest.raises(InvalidInboxInput) as caught:
        await store.mark(reader("alice"), "read", mine)
    assert caught.value.field == "ids"


async def test_an_empty_id_list_changes_nothing(store: InboxStore, engine: AsyncEngine) -> None:
    await _setup(store)
    assert (await store.mark(reader("alice"), "read", [])).items == 0
    assert (await table_rows(engine))["inbox_marks"] == 0


async def test_an_unknown_mark_is_refused(store: InboxStore) -> None:
    with pytest.raises(InvalidInboxInput) as caught:
        await store.mark(reader("alice"), "delete", "all")  # type: ignore[arg-type]
    assert caught.value.field == "mark"


@pytest.mark.parametrize("up_to", ["", "abc", "-1", "0", "1" * 30])
async def test_a_bad_up_to_is_refused(store: InboxStore, engine: AsyncEngine, up_to: str) -> None:
    await _setup(store)
    with pytest.raises(InvalidInboxInput) as caught:
        await store.mark(reader("alice"), "read", "all", up_to=up_to)
    assert caught.value.field == "up_to"
    assert (await table_rows(engine))["inbox_cursors"] == 0


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("cursor", "says"),
    [
        ("", "1-64 characters"),
        ("x" * 65, "1-64 characters"),
        ("!!!not base64!!!", "not base64url"),
        (_b64(b"\xff\xfe"), "not base64url"),
        (_b64(b"v9:12"), "not an inbox cursor"),
        (_b64(b"i1:"), "damaged"),
        (_b64(b"i1:-5"), "damaged"),
        (_b64(b"i1:0"), "damaged"),
        (_b64(b"i1:12x"), "damaged"),
        (_b64(b"i1:99999999999999999999"), "damaged"),
    ],
)
async def test_bad_cursors_are_refused_precisely(store: InboxStore, cursor: str, says: str) -> None:
    await _setup(store)
    with pytest.raises(InvalidCursor) as caught:
        await store.list(reader("alice"), cursor=cursor)
    assert caught.value.field == "cursor"
    assert says in caught.value.message


async def test_a_forged_cursor_pages_only_the_forgers_own_inbox(store: InboxStore) -> None:
    await _setup(store)
    page = await store.list(reader("alice"), cursor=_b64(b"i1:1000000"))
    assert [i.title for i in page.items] == ["mine"]


@pytest.mark.parametrize("limit", [0, -1, MAX_PAGE + 1])
async def test_a_page_size_out_of_bounds_is_refused(store: InboxStore, limit: int) -> None:
    with pytest.raises(InvalidInboxInput) as caught:
        await store.list(reader("alice"), limit=limit)
    assert caught.value.field == "limit"


def test_readers_are_bounded() -> None:
    with pytest.raises(InvalidInboxInput) as caught:
        Reader("")
    assert caught.value.field == "user"
    with pytest.raises(InvalidInboxInput):
        Reader("a\x00b")
    with pytest.raises(InvalidInboxInput) as caught:
        Reader("alice", frozenset(f"r{n}" for n in range(MAX_READER_NAMES + 1)))
    assert caught.value.field == "roles"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"title": "x" * 257}, "title"),
        ({"body": "x" * 4097}, "body"),
        ({"event_id": ""}, "event_id"),
        ({"category": "c" * 65}, "category"),
        ({"url": "u\x00"}, "url"),
    ],
)
def test_items_that_do_not_fit_are_refused(fields: dict[str, str], field: str) -> None:
    values = {"event_id": "e", "type": "a.b", "title": "t", **fields}
    with pytest.raises(InvalidInboxInput) as caught:
        NewItem(**values)  # type: ignore[arg-type]
    assert caught.value.field == field


async def test_an_item_needs_an_audience(store: InboxStore, engine: AsyncEngine) -> None:
    with pytest.raises(InvalidInboxInput) as caught:
        await store.add(item("nobody"))
    assert caught.value.field == "to"
    with pytest.raises(InvalidInboxInput):
        await store.add(item("bad user"), users=[""])
    assert (await table_rows(engine))["inbox_items"] == 0
