"""`tidings deliveries --event ID` tells one event's whole story, oldest first: held by a debounce window,
merged into another event's push (and where to look next); or held by quiet hours and released coalesced."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

from delivery.policy_rig import PolicyRig, policy_rig
from tidings.cli import deliveries as deliveries_cli


def story(rig: PolicyRig, event_id: str) -> list[str]:
    env = {"TIDINGS_DATA_DIR": str(rig.tmp_path), "TIDINGS_DATABASE_URL": rig.apns.database_url}
    result = CliRunner().invoke(deliveries_cli.app, ["--event", event_id], env=env)
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


async def test_the_story_of_a_merged_event_and_of_the_event_that_carried_it(tmp_path: Path) -> None:
    async with policy_rig(tmp_path, debounce={"tasks.changed": {"push": 60}}) as rig:
        await rig.phone("ann")
        publish = rig.hub.publish
        await rig.rows(await publish("tasks.changed", {"n": 1}, to={"users": ["ann"]}, push="silent"), 1)
        merged = await publish("tasks.changed", {"n": 2}, to={"users": ["ann"]}, push="silent")
        await rig.rows(merged, 1)
        carrier = await publish("tasks.changed", {"n": 3}, to={"users": ["ann"]}, push="silent")
        await rig.rows(carrier, 1)
        await rig.idle()
        rig.clock.advance(60)
        await rig.rows(carrier, 3)
        lines = await asyncio.to_thread(story, rig, merged)
        assert "debounced; held in its window until" in lines[1] and "skipped" in lines[1]
        assert lines[2].endswith(f"debounced; merged into {carrier}")
        assert lines[-1] == f"-> pushed as part of event {carrier}: tidings deliveries --event {carrier}"
        carried = await asyncio.to_thread(story, rig, carrier)
        outcomes = [line.split()[6] for line in carried[1:]]  # time is 2 words, then try, provider, ...
        assert outcomes == ["skipped", "coalesced", "delivered"]
        assert "debounced; one push for 2 event(s)" in carried[2]


async def test_the_story_of_a_push_held_by_quiet_hours(tmp_path: Path) -> None:
    async with policy_rig(tmp_path) as rig:
        await rig.phone("ann")
        await rig.hub.preferences.patch(
            "ann", {"quiet_hours": {"start": "07:00", "end": "09:00", "timezone": "UTC"}}
        )
        alert = {"mode": "alert", "title": "Hi"}
        event_id = await rig.hub.publish("message.new", {}, to={"users": ["ann"]}, push=alert)
        await rig.rows(event_id, 1)
        rig.clock.advance(3600)
        await rig.rows(event_id, 3)
        lines = await asyncio.to_thread(story, rig, event_id)
        assert "quiet_hours; held until 2027-01-15T09:00:00Z (1 held)" in lines[1]
        assert "quiet_hours_released; released after quiet hours for 1 held push(es)" in lines[2]
        assert " delivered " in lines[3]
