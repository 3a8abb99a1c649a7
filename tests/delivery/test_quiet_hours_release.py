"""Quiet hours end to end: alert pushes held in SQL, released coalesced (the latest, with the count) when the
hours end in the user's zone — across a DST change, in a zone taken from the user's device — and by a new
worker after a restart; silent pushes still go; mode "drop" drops."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support import ManualClock
from tidings import Hub

from .policy_rig import T0, PolicyRig, policy_rig, restarted

ALERT = {"mode": "alert", "title": "New message"}


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[PolicyRig]:
    async with policy_rig(tmp_path) as r:
        yield r


async def message(hub: Hub, user: str, n: int, push: object = ALERT) -> str:
    return await hub.publish(
        "message.new",
        {"conversation_id": "42", "n": n},
        to={"users": [user]},
        scope="conversation:42",
        push=push,
    )


async def release_round(hub: Hub) -> int:
    assert hub.runtime is not None
    return await hub.runtime.gate.coalescer.release_due()


async def test_held_alerts_are_released_once_coalesced_and_silent_ones_still_go(rig: PolicyRig) -> None:
    await rig.phone("ann")
    await rig.hub.preferences.patch(
        "ann", {"quiet_hours": {"start": "07:00", "end": "09:00", "timezone": "UTC"}}
    )
    held = [await message(rig.hub, "ann", n) for n in range(3)]  # T0 is 08:00 UTC: quiet
    reasons = sorted([(await rig.rows(event_id, 1))[0].reason for event_id in held])
    # jobs run concurrently: the holds coalesce in whatever order they come, counting 1, 2, 3
    assert reasons == [f"quiet_hours; held until 2027-01-15T09:00:00Z ({n} held)" for n in (1, 2, 3)]
    silent = await message(rig.hub, "ann", 9, push="silent")
    assert [r.outcome for r in await rig.rows(silent, 1)] == ["delivered"]
    await rig.idle()
    assert await release_round(rig.hub) == 0  # not due before the hours end
    rig.clock.advance(3600)
    pushes = await rig.pushes(2)
    released = pushes[1]
    assert released["event_id"] == held[-1] and released["coalesced"] == 3 and released["aps"]["alert"]
    story = await rig.rows(held[-1], 3)
    assert [(r.outcome, r.reason.split(";")[0]) for r in story] == [
        ("skipped", "quiet_hours"), ("coalesced", "quiet_hours_released"), ("delivered", ""),
    ]  # fmt: skip
    for earlier in held[:-1]:
        rows = await rig.rows(earlier, 2)
        assert rows[-1].reason == f"quiet_hours_released; coalesced into {held[-1]}"
    assert len(rig.apns.received()) == 2  # one silent, one released: not a burst


async def test_drop_mode_drops(rig: PolicyRig) -> None:
    await rig.phone("ann")
    hours = {"start": "07:00", "end": "09:00", "timezone": "UTC", "mode": "drop"}
    await rig.hub.preferences.patch("ann", {"quiet_hours": hours})
    event_id = await message(rig.hub, "ann", 1)
    [row] = await rig.rows(event_id, 1)
    assert (row.outcome, row.reason) == ("skipped", "quiet_hours_drop")
    assert rig.hub.runtime is not None and await rig.hub.runtime.held.count() == 0


async def test_quiet_hours_in_the_zone_of_the_users_latest_device(tmp_path: Path) -> None:
    # 2027-01-15T04:30Z is 23:30 on the 14th in New York: inside 22:00-07:00 there, ending at 12:00Z
    clock = ManualClock(frozen_at=T0 - 3.5 * 3600)
    async with policy_rig(tmp_path, clock=clock) as rig:
        await rig.phone("ann", timezone="America/New_York")
        await rig.hub.preferences.patch("ann", {"quiet_hours": {"start": "22:00", "end": "07:00"}})
        event_id = await message(rig.hub, "ann", 1)
        [row] = await rig.rows(event_id, 1)
        assert row.reason.startswith("quiet_hours; held until 2027-01-15T12:00:00Z")
        clock.advance(7.5 * 3600 - 1)
        assert await release_round(rig.hub) == 0
        clock.advance(2)
        [push] = await rig.pushes(1)
        assert push["event_id"] == event_id and "coalesced" not in push  # one held push: nothing coalesced


async def test_quiet_hours_across_a_dst_change_release_at_the_new_offset(tmp_path: Path) -> None:
    # Berlin springs forward on 2027-03-28 at 02:00 CET -> 03:00 CEST; 01:00-04:00 there ends at 02:00Z
    clock = ManualClock(frozen_at=1_806_193_800.0)  # 2027-03-28T00:30:00Z = 01:30 CET
    async with policy_rig(tmp_path, clock=clock) as rig:
        await rig.phone("ann")
        hours = {"start": "01:00", "end": "04:00", "timezone": "Europe/Berlin"}
        await rig.hub.preferences.patch("ann", {"quiet_hours": hours})
        event_id = await message(rig.hub, "ann", 1)
        [row] = await rig.rows(event_id, 1)
        assert row.reason.startswith("quiet_hours; held until 2027-03-28T02:00:00Z")
        clock.advance(5399)  # 01:59:59Z = 03:59:59 CEST: still quiet (a fixed +1 h would have released)
        assert await release_round(rig.hub) == 0
        clock.advance(2)
        await rig.pushes(1)


async def test_held_pushes_survive_a_worker_restart(rig: PolicyRig) -> None:
    await rig.phone("ann")
    await rig.hub.preferences.patch(
        "ann", {"quiet_hours": {"start": "07:00", "end": "09:00", "timezone": "UTC"}}
    )
    held = [await message(rig.hub, "ann", n) for n in range(2)]
    await rig.rows(held[-1], 1)
    await rig.hub.stop()  # the worker (and its process's memory) is gone; the rows are in SQL
    async with restarted(rig) as again:
        rig.clock.advance(3601)
        [push] = await rig.pushes(1)
        assert push["event_id"] == held[-1] and push["coalesced"] == 2
        assert again.runtime is not None and await again.runtime.held.count() == 0
