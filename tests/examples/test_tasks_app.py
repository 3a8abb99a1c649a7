"""The tasks example end to end, on its own routes and payloads, with the test's clock standing still unless
moved: a sync that changes something nudges the user's stream (`GET /events`) and phone (a silent push with the
hints); a burst of 40 operations is one nudge a second and at most one push a minute, the trailing ones with
the union of the changed ids; a sync that changes nothing emits nothing; device tokens at `/device-tokens`."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from examples.tasks.app import create_app
from examples_rig import Running, running_app

from support import ManualClock, frozen_clock, open_stream


def today(clock: ManualClock) -> date:
    return datetime.fromtimestamp(clock(), UTC).date()


async def sync(app: Running, user: str, *operations: dict[str, Any]) -> dict[str, Any]:
    response = await app.http.post(
        "/tasks/sync", json={"operations": list(operations)}, headers=app.auth(user)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def create(title: str, due: date | None = None, list_id: str | None = None) -> dict[str, Any]:
    return {"op": "create", "task": {"title": title, "due": due and due.isoformat(), "list_id": list_id}}


async def phone(app: Running, user: str) -> str:
    token = os.urandom(32).hex()
    body = {"token": token, "platform": "ios", "environment": "dev"}
    assert (await app.http.post("/device-tokens", json=body, headers=app.auth(user))).status_code == 201
    return token


async def test_a_40_operation_burst_is_one_nudge_a_second_and_one_push_a_minute(tmp_path: Path) -> None:
    clock = frozen_clock()
    async with running_app(tmp_path, create_app, clock=clock) as app:
        device = await phone(app, "ann")
        day = today(clock)
        async with open_stream(app.url, "/events", token=app.token("ann")) as stream:
            created = [(await sync(app, "ann", create(f"task {n}", day)))["created"][0] for n in range(40)]
            assert created == [f"t{n}" for n in range(1, 41)]

            leading = await stream.next_event()  # the first sync's, at once
            assert leading.event == "tasks.changed"
            assert leading.json()["data"] == {
                "todayCountChanged": True, "changedScopes": ["inbox", "today"], "updatedTaskIds": ["t1"],
            }  # fmt: skip
            [first_push] = await app.pushed("apns", device, 1)
            assert first_push["aps"] == {"content-available": 1}
            # the worker decides jobs concurrently: the first push decided leads, not necessarily t1's
            assert first_push["type"] == "tasks.changed" and len(first_push["updatedTaskIds"]) == 1
            await stream.assert_silent(0.3)  # the other 39 wait for the window's end

            clock.advance(1)
            trailing = (await stream.next_event()).json()
            assert trailing["data"] == {
                "todayCountChanged": True, "changedScopes": ["inbox", "today"], "updatedTaskIds": created[1:],
            }  # fmt: skip
            assert trailing["debounced"]["count"] == 39
            await stream.assert_silent(0.3)  # one nudge a second: nothing more

            await app.idle()
            assert len(app.received("apns", device)) == 1  # a second later: still one push
            clock.advance(59)
            pushes = await app.pushed("apns", device, 2)
            assert sorted(pushes[0]["updatedTaskIds"] + pushes[1]["updatedTaskIds"]) == sorted(created)
            assert pushes[1]["todayCountChanged"] is True and pushes[1]["coalesced"] == 39
            assert pushes[1]["changedScopes"] == ["inbox", "today"]
            await app.idle()
            clock.advance(60)
            await app.idle()
            assert len(app.received("apns", device)) == 2  # and nothing after the window closed
            tasks = (await app.http.get("/tasks", headers=app.auth("ann"))).json()
            assert tasks["todayCount"] == 40 and len(tasks["tasks"]) == 40


async def test_one_sync_of_40_operations_is_one_event_with_its_ids(tmp_path: Path) -> None:
    clock = frozen_clock()
    async with running_app(tmp_path, create_app, clock=clock) as app:
        device = await phone(app, "ann")
        async with open_stream(app.url, "/events", token=app.token("ann")) as stream:
            result = await sync(app, "ann", *(create(f"task {n}", list_id="work") for n in range(40)))
            assert result == {"applied": 40, "created": [f"t{n}" for n in range(1, 41)], "todayCount": 0}
            event = (await stream.next_event()).json()
            assert event["data"] == {
                "todayCountChanged": False, "changedScopes": ["list:work"], "updatedTaskIds": result["created"],
            }  # fmt: skip
            [push] = await app.pushed("apns", device, 1)
            assert push["updatedTaskIds"] == result["created"]
            clock.advance(60)
            await stream.assert_silent(0.3)  # nothing was merged: no trailing nudge
            await app.idle()
            assert len(app.received("apns", device)) == 1


async def test_a_sync_that_changes_nothing_emits_nothing(tmp_path: Path) -> None:
    clock = frozen_clock()
    async with running_app(tmp_path, create_app, clock=clock) as app:
        day = today(clock)
        done = {"op": "create", "task": {"title": "water plants", "due": day.isoformat(), "done": True}}
        [task] = (await sync(app, "ann", done))["created"]
        await app.idle()
        clock.advance(61)  # its windows (nothing merged in them) are over: the next change leads again
        device = await phone(app, "ann")
        async with open_stream(app.url, "/events", token=app.token("ann")) as stream:
            unchanged = await sync(
                app,
                "ann",
                {"op": "update", "id": task, "done": True, "title": "water plants"},  # as it is
                {"op": "delete", "id": "t999"},  # unknown: deleted elsewhere already
            )
            assert unchanged == {"applied": 0, "created": [], "todayCount": 0}
            await stream.assert_silent(0.3)  # a leading edge would have come at once
            reopened = await sync(app, "ann", {"op": "update", "id": task, "done": False})
            assert reopened["todayCount"] == 1
            data = (await stream.next_event()).json()["data"]
            assert data == {
                "todayCountChanged": True,
                "changedScopes": ["inbox", "today"],
                "updatedTaskIds": [task],
            }
            await app.pushed("apns", device, 1)  # and its push, the only one
            await app.idle()
            assert len(app.received("apns", device)) == 1


async def test_hints_name_the_scopes_that_changed(tmp_path: Path) -> None:
    clock = frozen_clock()
    async with running_app(tmp_path, create_app, clock=clock) as app:
        day = today(clock)
        async with open_stream(app.url, "/events", token=app.token("bo")) as stream:
            [task] = (await sync(app, "bo", create("report", day + timedelta(days=3), "work")))["created"]
            first = (await stream.next_event()).json()["data"]
            assert first == {
                "todayCountChanged": False,
                "changedScopes": ["list:work"],
                "updatedTaskIds": [task],
            }
            clock.advance(2)  # past the stream window: the next change is a leading edge again
            moved = await sync(
                app, "bo", {"op": "update", "id": task, "due": day.isoformat(), "list_id": None}
            )
            assert moved["todayCount"] == 1
            data = (await stream.next_event()).json()["data"]
            assert data == {
                "todayCountChanged": True, "changedScopes": ["inbox", "list:work", "today"], "updatedTaskIds": [task],
            }  # fmt: skip


async def test_device_tokens_round_trip(tmp_path: Path) -> None:
    async with running_app(tmp_path, create_app) as app:
        token = os.urandom(32).hex().upper()
        body = {"token": token, "platform": "macos", "environment": "prod"}
        added = await app.http.post("/device-tokens", json=body, headers=app.auth("ann"))
        assert added.status_code == 201
        assert added.json() == {"token": token.lower(), "platform": "macos", "environment": "prod"}
        again = await app.http.post("/device-tokens", json=body, headers=app.auth("ann"))
        assert again.status_code == 200
        [device] = await app.hub.devices.list_for_user("ann")
        assert (device.provider, device.platform, device.environment) == ("apns", "macos", "production")
        dev = {"token": os.urandom(32).hex(), "platform": "ios", "environment": "dev"}
        await app.http.post("/device-tokens", json=dev, headers=app.auth("ann"))
        assert {d.environment for d in await app.hub.devices.list_for_user("ann")} == {
            "production",
            "sandbox",
        }

        bad = await app.http.post(
            "/device-tokens", json={**body, "platform": "android"}, headers=app.auth("ann")
        )
        assert bad.status_code == 422 and bad.json()["field"] == "platform"
        not_hex = await app.http.post("/device-tokens", json={**body, "token": "zz"}, headers=app.auth("ann"))
        assert not_hex.status_code == 422 and not_hex.json()["field"] == "token"
        others = await app.http.request("DELETE", "/device-tokens", json=body, headers=app.auth("bo"))
        assert others.status_code == 404  # someone else's token: as if missing
        removed = await app.http.request("DELETE", "/device-tokens", json=body, headers=app.auth("ann"))
        assert removed.status_code == 204
        gone = await app.http.request("DELETE", "/device-tokens", json=body, headers=app.auth("ann"))
        assert gone.status_code == 404
        assert [d.environment for d in await app.hub.devices.list_for_user("ann")] == ["sandbox"]
