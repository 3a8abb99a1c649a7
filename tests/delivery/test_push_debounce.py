"""Push debounce in the worker, per (user, scope), on real parts: the first push of a quiet period goes at
once, later ones are merged and go once when the window closes — lists unioned, booleans OR-ed, the latest
spec — with the window's key as apns-collapse-id, and the delivery log tells each event's part."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tidings import Hub

from .policy_rig import policy_rig

WINDOWS = {"tasks.changed": {"push": 60}}


async def changed(hub: Hub, user: str, ids: list[str], today: bool) -> str:
    hints = {"updatedTaskIds": ids, "todayCountChanged": today}
    return await hub.publish(
        "tasks.changed", hints, to={"users": [user]}, push={"mode": "silent", "data": hints}
    )


async def test_a_burst_is_one_leading_and_one_trailing_push_with_the_union(tmp_path: Path) -> None:
    async with policy_rig(tmp_path, debounce=WINDOWS) as rig:
        await rig.phone("ann")
        lead = await changed(rig.hub, "ann", ["t1"], False)
        assert [r.outcome for r in await rig.rows(lead, 1)] == ["delivered"]
        burst = []
        for ids, today in ((["t2", "t3"], False), (["t3", "t4"], True), (["t5"], False)):
            burst.append(await changed(rig.hub, "ann", ids, today))
            [row] = await rig.rows(burst[-1], 1)  # one at a time: the merge order is the publish order
            assert (row.outcome, row.reason.split(";")[0]) == ("skipped", "debounced")
        assert len(rig.apns.received()) == 1
        await rig.idle()
        rig.clock.advance(60)
        leading, trailing = await rig.pushes(2)
        assert leading["updatedTaskIds"] == ["t1"] and "coalesced" not in leading
        assert trailing["updatedTaskIds"] == ["t2", "t3", "t4", "t5"]
        assert trailing["todayCountChanged"] is True and trailing["coalesced"] == 3
        assert trailing["event_id"] == burst[-1]
        assert (
            leading["headers"]["apns-collapse-id"]
            == trailing["headers"]["apns-collapse-id"]
            == "tasks.changed"
        )
        story = await rig.rows(burst[-1], 3)
        assert [r.outcome for r in story] == ["skipped", "coalesced", "delivered"]
        for earlier in burst[:-1]:
            assert (await rig.rows(earlier, 2))[-1].reason == f"debounced; merged into {burst[-1]}"


async def test_nothing_is_lost_at_a_window_edge_that_no_flusher_closed_yet(tmp_path: Path) -> None:
    # no flusher round after start: the window is due but unclaimed when the next push arrives
    async with policy_rig(tmp_path, debounce=WINDOWS, debounce_poll_seconds=3600) as rig:
        await rig.phone("ann")
        await rig.rows(await changed(rig.hub, "ann", ["t1"], False), 1)
        held = await changed(rig.hub, "ann", ["t2"], False)
        await rig.rows(held, 1)
        await rig.idle()
        rig.clock.advance(61)
        edge = await changed(rig.hub, "ann", ["t3"], True)
        pushes: list[dict[str, Any]] = await rig.pushes(2)
        assert pushes[1]["updatedTaskIds"] == ["t2", "t3"] and pushes[1]["coalesced"] == 2
        assert pushes[1]["event_id"] == edge
        assert rig.hub.runtime is not None
        gate = rig.hub.runtime.gate
        assert gate.debounce is not None and await gate.debounce.claim_due() == []  # nothing left behind


async def test_critical_pushes_are_never_debounced(tmp_path: Path) -> None:
    async with policy_rig(tmp_path, debounce=WINDOWS) as rig:
        await rig.phone("ann")
        for n in range(3):
            event_id = await rig.hub.publish(
                "tasks.changed", {"n": n}, to={"users": ["ann"]}, push="silent", critical=True
            )
            assert [r.outcome for r in await rig.rows(event_id, 1)] == ["delivered"]
