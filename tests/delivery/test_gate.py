"""The worker's gate on real parts (SQLite, the APNs sandbox over a socket, an in-process worker): offline-only
pushes decided at delivery time, mutes (and mutes that expire by the clock), push off, critical alerts; and
every push not sent is a row of the delivery log with its reason, and a count in push_skipped_total."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from tidings import Hub

from .policy_rig import T0, PolicyRig, policy_rig

ALERT = {"mode": "alert", "title": "New message", "when": "offline"}
TEXT = {"mode": "alert", "title": "New message"}


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[PolicyRig]:
    async with policy_rig(tmp_path) as r:
        yield r


def skipped_count(reason: str) -> float:
    return REGISTRY.get_sample_value("push_skipped_total", {"reason": reason}) or 0.0


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


async def message(hub: Hub, users: list[str], **fields: object) -> str:
    return await hub.publish(
        "message.new", {"conversation_id": "42"}, to={"users": users}, scope="conversation:42", **fields
    )


async def test_offline_only_push_skips_users_with_a_live_stream(rig: PolicyRig) -> None:
    await rig.phone("ann")
    await rig.phone("bob")
    conn = rig.online("ann")
    before = skipped_count("presence")
    event_id = await message(rig.hub, ["ann", "bob"], push=ALERT)
    rows = await rig.rows(event_id, 2)
    by_user = {r.user_id: (r.outcome, r.reason) for r in rows}
    assert by_user == {"ann": ("skipped", "presence"), "bob": ("delivered", "")}
    assert [r.device_id for r in rows if r.user_id == "ann"] == [None]  # a decision per user, not per device
    assert len(rig.apns.received()) == 1
    assert skipped_count("presence") == before + 1
    rig.offline(conn)


async def test_offline_is_decided_when_the_worker_delivers_not_when_published(tmp_path: Path) -> None:
    async with policy_rig(tmp_path, worker_in_process=False) as rig:
        await rig.phone("ann")
        await rig.phone("bob")
        bob_then = rig.online("bob")
        event_id = await message(rig.hub, ["ann", "bob"], push=ALERT)  # queued: nobody decided yet
        rig.offline(bob_then)  # bob leaves, ann arrives, before any worker takes the job
        ann_now = rig.online("ann")
        assert rig.hub.runtime is not None
        await rig.hub.runtime.build_worker(burst=True).run()
        rows = await rig.rows(event_id, 2)
        assert {r.user_id: r.outcome for r in rows} == {"ann": "skipped", "bob": "delivered"}
        rig.offline(ann_now)


async def test_a_muted_scope_gets_no_push_until_its_mute_ends(rig: PolicyRig) -> None:
    await rig.phone("ann")
    await rig.hub.preferences.put_scope("ann", "conversation:42", _scope({"muted_until": iso(T0 + 8 * 3600)}))
    muted = await message(rig.hub, ["ann"], push=TEXT)
    [row] = await rig.rows(muted, 1)
    assert (row.outcome, row.reason) == ("skipped", "muted")
    rig.clock.advance(8 * 3600 + 1)  # the mute ends by the injected clock
    sent = await message(rig.hub, ["ann"], push=TEXT)
    [row] = await rig.rows(sent, 1)
    assert row.outcome == "delivered"


async def test_muting_the_type_mutes_every_scope_of_it(rig: PolicyRig) -> None:
    await rig.phone("ann")
    await rig.hub.preferences.put_scope("ann", "message.new", _scope({"muted": True}))
    event_id = await message(rig.hub, ["ann"], push=TEXT)
    [row] = await rig.rows(event_id, 1)
    assert row.reason == "muted"


async def test_push_off_skips_everything_and_critical_does_not_override_it(rig: PolicyRig) -> None:
    await rig.phone("ann")
    await rig.hub.preferences.patch("ann", {"push": False})
    plain = await message(rig.hub, ["ann"], push=TEXT)
    critical = await message(rig.hub, ["ann"], push=TEXT, critical=True)
    assert [(r.outcome, r.reason) for r in await rig.rows(plain, 1)] == [("skipped", "push_off")]
    assert [(r.outcome, r.reason) for r in await rig.rows(critical, 1)] == [("skipped", "push_off")]
    await rig.hub.preferences.put_scope("ann", "conversation:42", _scope({"push": False}))
    await rig.hub.preferences.patch("ann", {"push": None})
    scoped = await message(rig.hub, ["ann"], push=TEXT)
    assert [r.reason for r in await rig.rows(scoped, 1)] == ["scope_push_off"]


async def test_a_critical_alert_goes_through_a_mute_and_quiet_hours_time_sensitive(rig: PolicyRig) -> None:
    await rig.phone("ann")
    await rig.hub.preferences.put_scope("ann", "conversation:42", _scope({"muted": True}))
    await rig.hub.preferences.patch(
        "ann", {"quiet_hours": {"start": "00:00", "end": "23:59", "timezone": "UTC"}}
    )
    event_id = await message(rig.hub, ["ann"], push=TEXT, critical=True)
    [row] = await rig.rows(event_id, 1)
    assert row.outcome == "delivered"
    [push] = await rig.pushes(1)
    assert push["aps"]["interruption-level"] == "time-sensitive"
    assert push["headers"]["apns-push-type"] == "alert"


def _scope(body: dict[str, object]) -> object:
    from tidings.policy.preferences import parse_scope

    return parse_scope(body)
