"""The inbox over HTTP on a real socket: list (keyset pages, unread, category, archived), counts, read / seen /
archive by ids and all; bad input (foreign ids, too many ids, bad cursors, malformed bodies) is a 4xx that changes
nothing; pages stay stable while items arrive; `inbox.changed` reaches every stream of the user with the new
counts; the admin's view; a database outage on publish is a 503."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from inbox.helpers import state, table_rows
from support import PUBLISH_KEY, Frame, InProcessServer, SSEStream, app_of, free_port, open_stream
from tidings import Hub

PUBLISHER = {"Authorization": f"Bearer {PUBLISH_KEY}"}


@pytest.fixture
async def served(make_settings: Callable[..., Any]) -> AsyncIterator[tuple[httpx.AsyncClient, Hub]]:
    hub = Hub(make_settings(inbox_max_ids_per_request=5))
    async with InProcessServer(app_of(hub)) as server, httpx.AsyncClient(base_url=server.url) as client:
        yield client, hub


def bearer(token: Callable[..., str], user: str = "ann", *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user, *roles)}"}


async def publish(client: httpx.AsyncClient, title: str, to: dict[str, Any], **inbox: Any) -> str:
    event = {"type": "notes.posted", "to": to, "inbox": {"title": title, **inbox}}
    r = await client.post("/v1/publish", headers=PUBLISHER, json=event)
    assert r.status_code == 202, r.text
    return str(r.json()["ids"][0])


async def inbox(client: httpx.AsyncClient, me: dict[str, str], **params: Any) -> dict[str, Any]:
    r = await client.get("/v1/inbox", headers=me, params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def counts(client: httpx.AsyncClient, me: dict[str, str]) -> dict[str, Any]:
    r = await client.get("/v1/inbox/counts", headers=me)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def mark(client: httpx.AsyncClient, me: dict[str, str], what: str, body: Any) -> httpx.Response:
    return await client.post(f"/v1/inbox/{what}", headers=me, json=body)


def titles(page: dict[str, Any]) -> list[str]:
    return [item["title"] for item in page["items"]]


async def test_list_counts_and_every_mark_over_http(
    served: tuple[httpx.AsyncClient, Hub], token: Callable[..., str]
) -> None:
    client, _ = served
    me = bearer(token, "ann", "staff")
    for n in range(4):
        await publish(client, f"n{n}", {"users": ["ann"]}, category="orders" if n % 2 else None)
    await publish(client, "memo", {"roles": ["staff"]}, url="/memos/1")
    await publish(client, "not hers", {"users": ["bob"]})
    first = await inbox(client, me, limit=2)
    assert titles(first) == ["memo", "n3"] and first["items"][0]["url"] == "/memos/1"
    second = await inbox(client, me, limit=2, cursor=first["next_cursor"])
    third = await inbox(client, me, limit=2, cursor=second["next_cursor"])
    assert titles(second) + titles(third) == ["n2", "n1", "n0"] and third["next_cursor"] is None
    assert await counts(client, me) == {"unseen": 5, "unread": 5, "by_category": {"orders": 2}}
    ids = {item["title"]: item["id"] for item in (await inbox(client, me))["items"]}

    r = await mark(client, me, "seen", {"ids": [ids["n0"]]})
    assert r.status_code == 200 and r.json() == {
        "mark": "seen", "marked": 1, "up_to": None, "counts": {"unseen": 4, "unread": 5, "by_category": {"orders": 2}}
    }  # fmt: skip
    r = await mark(client, me, "read", {"ids": [ids["n1"], ids["memo"]]})
    assert r.json()["counts"] == {"unseen": 2, "unread": 3, "by_category": {"orders": 1}}
    r = await mark(client, me, "archive", {"ids": [ids["n2"]]})
    assert r.json()["counts"]["unread"] == 2
    assert titles(await inbox(client, me)) == ["memo", "n3", "n1", "n0"]
    assert titles(await inbox(client, me, archived="true")) == ["n2"]
    assert titles(await inbox(client, me, unread="true")) == ["n3", "n0"]
    assert titles(await inbox(client, me, category="orders")) == ["n3", "n1"]
    flags = {i["title"]: (i["seen"], i["read"], i["archived"]) for i in (await inbox(client, me))["items"]}
    assert flags == {"memo": (True, True, False), "n3": (False, False, False), "n1": (True, True, False),
                     "n0": (True, False, False)}  # fmt: skip

    r = await mark(client, me, "read", {"all": True})
    assert r.status_code == 200 and r.json()["counts"]["unread"] == 0
    assert int(r.json()["up_to"]) >= int(
        ids["memo"]
    )  # the newest item stored (anyone's: a cursor, not a list)
    await publish(client, "later", {"users": ["ann"]})  # after mark-all: unread
    assert (await counts(client, me))["unread"] == 1
    assert (await counts(client, bearer(token, "bob")))["unread"] == 1  # bob's own is untouched


async def test_mark_all_up_to_leaves_what_the_client_had_not_shown(
    served: tuple[httpx.AsyncClient, Hub], token: Callable[..., str]
) -> None:
    client, _ = served
    me = bearer(token)
    shown = await publish(client, "shown", {"users": ["ann"]})
    await publish(client, "arrived meanwhile", {"users": ["ann"]})
    page = await inbox(client, me)
    shown_id = next(i["id"] for i in page["items"] if i["event_id"] == shown)
    r = await mark(client, me, "read", {"all": True, "up_to": shown_id})
    assert r.json()["counts"]["unread"] == 1
    assert titles(await inbox(client, me, unread="true")) == ["arrived meanwhile"]


async def test_bad_input_is_a_4xx_and_changes_nothing(
    served: tuple[httpx.AsyncClient, Hub], token: Callable[..., str]
) -> None:
    client, hub = served
    me = bearer(token)
    await publish(client, "mine", {"users": ["ann"]})
    await publish(client, "bob's", {"users": ["bob"]})
    mine = (await inbox(client, me))["items"][0]["id"]
    bobs = (await inbox(client, bearer(token, "bob")))["items"][0]["id"]
    engine = hub.inbox.store.engine
    before = (await table_rows(engine), await state(engine))

    answers = {
        "foreign id": (await mark(client, me, "read", {"ids": [mine, bobs]}), 404, None),
        "unknown id": (await mark(client, me, "read", {"ids": ["999999"]}), 404, None),
        "not an id": (await mark(client, me, "archive", {"ids": ["12abc"]}), 404, None),
        "too many ids": (await mark(client, me, "read", {"ids": [mine] * 6}), 422, "ids"),
        "huge body": (await mark(client, me, "read", {"ids": ["1"] * 100_000}), 413, None),
        "ids and all": (await mark(client, me, "read", {"ids": [mine], "all": True}), 422, None),
        "neither": (await mark(client, me, "seen", {}), 422, None),
        "ids: all": (await mark(client, me, "seen", {"ids": "all"}), 422, "ids"),
        "up_to alone": (await mark(client, me, "seen", {"ids": [mine], "up_to": mine}), 422, None),
        "bad up_to": (await mark(client, me, "read", {"all": True, "up_to": "x"}), 422, "up_to"),
        "unknown field": (await mark(client, me, "read", {"all": True, "every": True}), 422, "every"),
        "id not a string": (await mark(client, me, "read", {"ids": [int(mine)]}), 422, "ids.0"),
        "not JSON": (await client.post("/v1/inbox/read", headers=me, content=b"{ids"), 400, None),
        "bad cursor": (await client.get("/v1/inbox", headers=me, params={"cursor": "bm90LWEtY3Vyc29y"}), 422,
                       "cursor"),
        "long cursor": (await client.get("/v1/inbox", headers=me, params={"cursor": "x" * 65}), 422, "cursor"),
        "limit 0": (await client.get("/v1/inbox", headers=me, params={"limit": 0}), 422, "limit"),
        "limit 101": (await client.get("/v1/inbox", headers=me, params={"limit": 101}), 422, "limit"),
        "bad category": (await client.get("/v1/inbox", headers=me, params={"category": "a b"}), 422, "category"),
        "no token": (await client.get("/v1/inbox/counts"), 401, None),
    }  # fmt: skip
    for what, (r, status, field) in answers.items():
        assert r.status_code == status, (what, r.status_code, r.text)
        body = r.json()
        assert set(body) >= {"error", "message", "field"}, (what, body)
        if field is not None:
            assert body["field"] == field, (what, body)
    assert bobs in answers["foreign id"][0].json()["message"]
    assert (await table_rows(engine), await state(engine)) == before  # nothing changed
    assert (await counts(client, me))["unread"] == 1


async def test_pages_stay_stable_while_new_items_arrive(
    served: tuple[httpx.AsyncClient, Hub], token: Callable[..., str]
) -> None:
    client, _ = served
    me = bearer(token)
    for n in range(7):
        await publish(client, f"old {n}", {"users": ["ann"]})
    seen, cursor, n = [], None, 0
    while True:
        page = await inbox(client, me, limit=3, **({"cursor": cursor} if cursor else {}))
        seen += titles(page)
        await publish(client, f"new {n}", {"users": ["ann"]})  # arrives between pages
        await publish(client, f"new for all {n}", {"broadcast": True})
        n += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"old {n}" for n in range(6, -1, -1)]  # none repeated, none skipped
    assert titles(await inbox(client, me, limit=2)) == ["new for all 2", "new 2"]


async def next_change(stream: SSEStream) -> dict[str, Any]:
    while True:
        frame: Frame = await stream.next_event()
        if frame.event == "inbox.changed":
            assert frame.id is None  # a state, not history: no id, nothing to resume
            body: dict[str, Any] = frame.json()
            return body


async def test_inbox_changed_reaches_every_stream_of_the_user_with_the_new_counts(
    server: InProcessServer, token: Callable[..., str]
) -> None:
    ann, staff = token("ann"), token("ann", "staff")
    async with (
        httpx.AsyncClient(base_url=server.url) as client,
        open_stream(server.url, token=ann) as tab1,
        open_stream(server.url, token=ann) as tab2,
        open_stream(server.url, token=staff) as with_role,
        open_stream(server.url, token=token("bob")) as bob,
    ):
        await publish(client, "hello", {"users": ["ann"]})
        expected = {"unseen": 1, "unread": 1, "by_category": {}}
        assert await next_change(tab1) == expected and await next_change(tab2) == expected
        assert await next_change(with_role) == expected
        await publish(client, "memo", {"roles": ["staff"]}, category="team")
        assert await next_change(with_role) == {"unseen": 2, "unread": 2, "by_category": {"team": 1}}
        mine = {"Authorization": f"Bearer {ann}"}
        hello = (await inbox(client, mine))["items"][0]["id"]
        r = await mark(client, mine, "read", {"ids": [hello]})  # read on the phone...
        assert r.status_code == 200
        read = {"unseen": 0, "unread": 0, "by_category": {}}
        assert await next_change(tab1) == read and await next_change(tab2) == read  # ...cleared in every tab
        assert await next_change(with_role) == {"unseen": 1, "unread": 1, "by_category": {"team": 1}}
        await publish(client, "for bob", {"users": ["bob"]})
        assert await next_change(bob) == {"unseen": 1, "unread": 1, "by_category": {}}
        await tab1.assert_silent(0.2)  # nothing of bob's


async def test_admin_sees_a_users_inbox_and_nobody_else_does(
    served: tuple[httpx.AsyncClient, Hub], token: Callable[..., str]
) -> None:
    client, _ = served
    await publish(client, "direct", {"users": ["ann"]})
    await publish(client, "memo", {"roles": ["staff"]})
    admin = bearer(token, "ops", "admin")
    r = await client.get("/v1/admin/inbox", headers=admin, params={"user_id": "ann", "roles": "staff"})
    assert r.status_code == 200, r.text
    assert titles(r.json()) == ["memo", "direct"] and r.json()["counts"]["unread"] == 2
    r = await client.get("/v1/admin/inbox", headers=admin, params={"user_id": "ann"})
    assert titles(r.json()) == ["direct"] and r.json()["user_id"] == "ann"
    r = await client.get("/v1/admin/inbox", headers=bearer(token, "ann"), params={"user_id": "ann"})
    assert r.status_code == 403


async def test_a_database_outage_on_publish_is_a_503(
    make_settings: Callable[..., Any], token: Callable[..., str]
) -> None:
    hub = Hub(make_settings(database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"))
    async with InProcessServer(app_of(hub)) as server, httpx.AsyncClient(base_url=server.url) as client:
        event = {"type": "notes.posted", "to": {"users": ["ann"]}, "inbox": {"title": "t"}}
        r = await client.post("/v1/publish", headers=PUBLISHER, json=event)
        assert r.status_code == 503 and r.json()["error"] == "unavailable", r.text
        assert r.headers["retry-after"] == "1"
        r = await client.get("/v1/inbox/counts", headers=bearer(token))
        assert r.status_code == 503 and r.json()["error"] == "unavailable", r.text
