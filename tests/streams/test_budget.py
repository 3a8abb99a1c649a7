"""The process-wide budget of buffered stream bytes, on both write paths, with a controlled clock.

Attached streams (socket writes under `tidings serve`) report their transport's buffer after each write; ASGI
streams report their own queued chunks. Accounting must not scan the streams per event, a burst must not cut a
reader that drains it, and over the cap the furthest-behind streams are cut first.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from support import ManualClock
from tidings import Hub, Settings
from tidings.auth import Principal
from tidings.streams import router as router_module
from tidings.streams.budget import GRACE, StreamBudget
from tidings.streams.connection import BufferLimits, Connection
from tidings.streams.router import TRIM_AFTER_BYTES, Router
from tidings.wire import Envelope

T0 = 1_000_000.0
BIG = 1 << 30  # a per-stream limit out of the way: these tests are about the process-wide one


def make_router(clock: ManualClock, cap: int) -> Router:
    return Router(keepalive=30, idle_timeout=0, clock=clock, max_buffered_bytes=cap)


def stream(
    router: Router, user: str, clock: ManualClock, *, max_bytes: int = BIG, sndbuf: int = 0
) -> Connection:
    limits = BufferLimits(max_bytes=max_bytes, max_events=10**9, budget=router.budget, send_buffer=sndbuf)
    conn = Connection(Principal(user), ["*", f"u:{user}"], endpoint="events", limits=limits, clock=clock)
    router.add(conn)
    return conn


def event(event_id: str, channel: str, size: int = 100) -> Envelope:
    data = "x" * size
    return Envelope.parse(f'{event_id}\na.b\n{channel}\n{{"data":"{data}"}}'.encode(), lambda: T0)


class Transport:
    """An attached stream's transport: what it was given, and how much of it the client has not taken."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.buffered = 0
        self.writes: list[bytes] = []
        self.aborted = False
        self.sock = sock

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def writelines(self, chunks: list[bytes]) -> None:
        self.writes.append(b"".join(chunks))

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str) -> object:
        return self.sock if name == "socket" else None


def attach(router: Router, conn: Connection, transport: Transport) -> None:
    conn.attach(transport, router.mark_dirty)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(frozen_at=T0)


@pytest.fixture
def updates(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Every call of StreamBudget.update (the budget's only per-write work), recorded as the new size."""
    calls: list[int] = []
    original = StreamBudget.update

    def spy(self: StreamBudget, conn: Connection, size: int) -> None:
        calls.append(size)
        original(self, conn, size)

    monkeypatch.setattr(StreamBudget, "update", spy)
    yield calls


async def test_a_stream_that_keeps_up_costs_the_budget_nothing_per_event(
    clock: ManualClock, updates: list[int]
) -> None:
    router = make_router(clock, cap=1 << 20)
    conn = stream(router, "a", clock)
    transport = Transport()
    attach(router, conn, transport)
    for i in range(100):
        router.route(event(f"{i}-0", "*"))
        await asyncio.sleep(0)  # one flush per event
    assert len(transport.writes) == 100 and updates == [] and router.budget.total == 0


async def test_accounting_touches_only_the_streams_whose_backlog_changed(
    clock: ManualClock, updates: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No scan per event: with 2,000 streams, an event to one user costs the budget one update, and a broadcast
    costs one per stream that fell behind — and nobody is re-measured while the total is under the cap."""
    measured: list[Connection] = []
    monkeypatch.setattr(Connection, "measure", lambda self: measured.append(self))
    router = make_router(clock, cap=1 << 30)
    asgi = [stream(router, f"u{i}", clock) for i in range(1000)]
    attached = [stream(router, f"v{i}", clock) for i in range(1000)]
    transports = [Transport() for _ in attached]
    for conn, transport in zip(attached, transports, strict=True):
        attach(router, conn, transport)
    router.route(event("1-0", "u:u7"))
    assert len(updates) == 1 and router.budget.total == asgi[7].counted > 0
    for transport in transports[:10]:
        transport.buffered = 5000  # ten clients stop reading
    router.route(event("2-0", "*"))
    await asyncio.sleep(0)
    assert len(updates) == 1 + 1000 + 10  # every ASGI stream queued it; ten sockets backed up
    assert router.budget.total == sum(c.counted for c in asgi) + 10 * 5000
    assert measured == []


def test_over_the_cap_the_furthest_behind_stream_is_cut_first(clock: ManualClock) -> None:
    frame = len(event("1000-0", "*").frame)  # every id below has four digits: every frame is this long
    router = make_router(clock, cap=90 * frame)
    far, middle, near = (stream(router, name, clock) for name in ("far", "middle", "near"))
    for name, count in (("far", 64), ("middle", 16), ("near", 4)):
        for i in range(count):
            router.route(event(f"{1000 + i}-0", f"u:{name}"))
    assert router.budget.total == 84 * frame and router.budget.cuts == 0
    clock.advance(GRACE)
    for i in range(12):  # `near` catches up with `middle`: the total passes the cap
        near.push(event(f"{2000 + i}-0", "u:near"))
    assert far.close_reason == "slow" and far.counted == 0
    assert middle.close_reason is None and near.close_reason is None
    assert router.budget.total == 32 * frame and router.budget.cuts == 1


def test_a_burst_does_not_cut_a_stream_that_fell_behind_just_now(clock: ManualClock) -> None:
    """A burst bigger than the cap is held while readers drain it; a stream still behind a second later is cut,
    by the next sweep if nothing else is written to it."""
    router = make_router(clock, cap=10_000)
    a, b = stream(router, "a", clock), stream(router, "b", clock)
    for i in range(100):
        router.route(event(f"{i}-0", "*"))
    assert router.budget.total > 10_000 and a.close_reason is None and b.close_reason is None
    clock.advance(GRACE)
    router.sweep()
    assert sum(c.close_reason == "slow" for c in (a, b)) >= 1
    assert router.budget.total <= 10_000


async def test_an_attached_stream_is_re_measured_before_it_is_cut(clock: ManualClock) -> None:
    router = make_router(clock, cap=100_000)
    drained, stuck, fresh = (stream(router, name, clock) for name in ("drained", "stuck", "fresh"))
    transports = {conn.principal.user_id: Transport() for conn in (drained, stuck, fresh)}
    for conn in (drained, stuck, fresh):
        attach(router, conn, transports[conn.principal.user_id])
    transports["drained"].buffered = 80_000
    transports["stuck"].buffered = 60_000
    router.route(event("1-0", "u:drained"))
    router.route(event("2-0", "u:stuck"))
    await asyncio.sleep(0)
    assert router.budget.total == 140_000  # over the cap, but both fell behind just now
    clock.advance(GRACE)
    transports["drained"].buffered = 0  # its client read everything; the transport does not tell us
    transports["fresh"].buffered = 50_000
    router.route(event("3-0", "u:fresh"))
    await asyncio.sleep(0)
    assert drained.close_reason is None and drained.counted == 0  # re-measured, not cut
    assert stuck.close_reason == "slow" and transports["stuck"].aborted
    assert fresh.close_reason is None and router.budget.total == 50_000


async def test_a_cut_drops_the_kernel_send_queue_and_the_memory_goes_back(
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    trims: list[int] = []

    def trim() -> bool:
        trims.append(1)
        return True

    monkeypatch.setattr(router_module, "release_free_memory", trim)
    router = make_router(clock, cap=TRIM_AFTER_BYTES)
    left, right = socket.socketpair()
    try:
        conn = stream(router, "a", clock, sndbuf=32 * 1024)
        transport = Transport(left)
        attach(router, conn, transport)
        assert left.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * 32 * 1024  # Linux doubles it
        transport.buffered = TRIM_AFTER_BYTES
        router.route(event("1-0", "*"))
        await asyncio.sleep(0)
        clock.advance(GRACE)
        transport.buffered += 1
        router.route(event("2-0", "*"))
        await asyncio.sleep(0)
        assert conn.close_reason == "slow" and transport.aborted
        assert struct.unpack("ii", left.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)) == (1, 0)
        assert router.budget.total == 0 and router.budget.released > TRIM_AFTER_BYTES
        router.sweep()
        assert trims == [1] and router.trims == 1
        router.remove(conn)
        router.sweep()
        assert trims == [1]  # nothing more was freed
    finally:
        left.close()
        right.close()


async def test_a_slow_cut_drops_a_stream_that_was_already_closing(clock: ManualClock) -> None:
    router = make_router(clock, cap=0)
    conn = stream(router, "a", clock)
    transport = Transport()
    attach(router, conn, transport)
    conn.close("expired")
    conn.close("slow")
    assert conn.close_reason == "expired" and transport.aborted


def test_ending_a_stream_releases_what_it_held(clock: ManualClock) -> None:
    router = make_router(clock, cap=0)  # 0: counted, never cut
    conns = [stream(router, f"u{i}", clock) for i in range(3)]
    for i in range(50):
        router.route(event(f"{i}-0", "*"))
    assert router.budget.total == sum(c.counted for c in conns) > 0
    for conn in conns:
        conn.close("client")
        router.remove(conn)
    assert router.budget.total == 0 and router.budget.behind() == []


@pytest.mark.parametrize("limit", ["bytes", "events"])
def test_a_replay_larger_than_the_stream_buffer_becomes_a_reset(clock: ManualClock, limit: str) -> None:
    """Regression: a replay over the per-stream limit closed the stream as slow, and the client reconnected
    asking for the same replay, forever. It now gets `event: reset`, then the live events."""
    limits = BufferLimits(
        max_bytes=5_000 if limit == "bytes" else BIG, max_events=10 if limit == "bytes" else 5
    )
    conn = Connection(Principal("a"), ["*"], endpoint="events", limits=limits, clock=clock, replaying=True)
    conn.push(event("100-0", "*"))  # live, while the history was read
    conn.finish_replay([event(f"{i}-0", "*", size=1000) for i in range(1, 9)], after="0-0")  # 8 events, 8 KB
    conn.push(event("101-0", "*"))
    queued = b"".join(conn._chunks)
    assert conn.close_reason is None
    assert queued.startswith(b"event: reset\n")
    assert b"id: 1-0" not in queued and b"id: 100-0" in queued and b"id: 101-0" in queued


async def test_one_user_holds_at_most_16_streams_by_default(make_settings: Callable[..., Settings]) -> None:
    hub = Hub(make_settings())
    limit = hub.settings.max_connections_per_user
    opened = [
        hub.open_stream(Principal("alice"), [], endpoint="events", limit=limit, ip="", replaying=False)
        for _ in range(17)
    ]
    assert [c.close_reason for c in opened].count("replaced") == 1 and opened[0].close_reason == "replaced"


def test_the_default_cap_follows_the_machine(make_settings: Callable[..., Any]) -> None:
    settings = make_settings()
    assert 16 << 20 <= settings.effective_stream_buffer_total_bytes <= 128 << 20
    assert make_settings(stream_buffer_total_bytes=1 << 20).effective_stream_buffer_total_bytes == 1 << 20
    assert settings.stream_buffer_bytes == 512 * 1024
