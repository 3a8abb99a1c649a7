"""The hub as a library: no web framework needed, nothing written before start, bounded embedded history."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support import ManualClock
from tidings import Hub
from tidings.auth import Principal
from tidings.errors import AuthError, InvalidEvent, NotStarted
from tidings.wire import encode_tail

T0 = 1_800_000_000.0


async def test_constructing_a_hub_writes_no_file(tmp_path: Path, make_settings: Callable[..., Any]) -> None:
    data_dir = tmp_path / "fresh"
    hub = Hub(make_settings(data_dir=data_dir, jwt_secret="", publish_key=""))  # development: secrets to make
    assert not data_dir.exists()
    with pytest.raises(NotStarted):
        _ = hub.devices
    async with hub.lifespan():
        assert (data_dir / "dev-secrets.json").exists()  # generated at start, not at construction
        assert hub.settings.jwt_secret and hub.settings.publish_key


def test_the_core_imports_no_web_framework() -> None:
    import subprocess

    code = (
        "import sys, tidings.hub, tidings.runtime, tidings.delivery.worker, tidings.registry.store; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette', 'uvicorn')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


async def test_publish_errors_are_ours_not_http(hub: Hub) -> None:
    with pytest.raises(InvalidEvent) as info:
        await hub.publish("Bad Type", {}, to={"users": ["a"]})
    assert info.value.field == "type"
    with pytest.raises(InvalidEvent) as batch:
        await hub.publish_many([{"type": "a.b", "to": {"users": ["x"]}}, {"type": "a.b", "to": {}}])
    assert batch.value.field == "[1].to"
    with pytest.raises(AuthError) as auth:
        await hub.authenticate(None)
    assert auth.value.code == "unauthorized"


async def test_embedded_history_stays_bounded_with_many_users_and_nobody_listening(
    make_settings: Callable[..., Any],
) -> None:
    """Regression: channel ring buffers were never expired, so memory grew with every user ever published to.
    100,000 events to 10,000 users over 1,000 s of (injected) time, a 60 s window: only the channels written in
    the last minute may stay, and a resume inside the window still gets exactly what it missed."""
    clock = ManualClock(frozen_at=T0)
    hub = Hub(make_settings(history_max_age_seconds=60, worker_in_process=False), clock=clock)
    async with hub.lifespan():
        users = [f"u{i}" for i in range(10_000)]
        ids: list[str] = []
        for second in range(1_000):  # 100 events a second, each to one user, users in turn
            tails = [
                encode_tail(
                    "task.changed", [f"u:{users[n % 10_000]}"], {"type": "task.changed", "data": {"n": n}}
                )
                for n in range(second * 100, second * 100 + 100)
            ]
            ids += await hub.bus.publish(tails)  # the bus directly: validation is not what this measures
            clock.advance(1.0)
            hub.streams.sweep()  # what the router's sweeper task does every second
        held = len(hub.bus._history)  # type: ignore[attr-defined]
        assert held <= 6_000 + 100, f"{held} channels held for a 60 s window of 100 events/s"
        # resume inside the window: user u9999 got events n = 99999 and n = 89999 (100 s earlier, gone)
        last = ids[-1]
        resumed_from = ids[99_999 - 10_000 - 1]  # just before u9999's event 100 s ago: older than the window
        recent_from = ids[99_999 - 50]  # 0.5 s ago
        conn = hub.open_stream(Principal("u9999"), [], endpoint="events", limit=0, ip="", replaying=True)
        await hub.resume(conn, recent_from)
        frames = b"".join(conn._chunks)
        assert frames.count(b"\nevent: task.changed\n") == 1 and f"id: {last}".encode() in frames
        stale = hub.open_stream(Principal("u9999"), [], endpoint="events", limit=0, ip="", replaying=True)
        await hub.resume(stale, resumed_from)
        assert b"event: reset" in b"".join(stale._chunks)  # outside the window: an explicit reset, no gap
