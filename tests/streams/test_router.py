"""The local fan-out index, connection buffers, limits and the sweep (with a controlled clock)."""

from __future__ import annotations

import asyncio

import pytest

from support import ManualClock
from tidings.auth import Principal
from tidings.streams.connection import BufferLimits, Connection
from tidings.streams.router import Router
from tidings.wire import KEEPALIVE, Envelope

T0 = 1_000_000.0  # far from wall time: anything stamped with time.time() instead of the clock shows


def conn(
    user: str,
    *channels: str,
    endpoint: str = "events",
    limits: BufferLimits | None = None,
    expires_at: float | None = None,
    replaying: bool = False,
    clock: ManualClock | None = None,
) -> Connection:
    principal = Principal(user, expires_at=expires_at)
    return Connection(
        principal,
        ["*", f"u:{user}", *channels],
        endpoint=endpoint,
        limits=limits or BufferLimits(),
        clock=clock or ManualClock(frozen_at=T0),
        replaying=replaying,
    )


def make_router(
    clock: ManualClock | None = None, *, keepalive: float = 30, idle_timeout: float = 0
) -> Router:
    return Router(keepalive=keepalive, idle_timeout=idle_timeout, clock=clock or ManualClock(frozen_at=T0))


def envelope(event_id: str, channels: str, kind: str = "a.b") -> Envelope:
    return Envelope.parse(f'{event_id}\n{kind}\n{channels}\n{{"data":{{}}}}'.encode(), lambda: T0)


def queued(c: Connection) -> bytes:
    chunks = c._chunks  # the writer would take exactly this
    return b"".join(chunks)


def test_events_reach_exactly_their_audience_once() -> None:
    router = make_router()
    alice, bob, admin = conn("alice", "t:news"), conn("bob"), conn("carol", "r:admin")
    for c in (alice, bob, admin):
        router.add(c)
    router.route(envelope("1-0", "u:alice t:news"))  # alice twice over: once on the wire
    router.route(envelope("2-0", "r:admin"))
    router.route(envelope("3-0", "*"))
    assert queued(alice).count(b"id: 1-0") == 1 and b"id: 2-0" not in queued(alice)
    assert b"id: 1-0" not in queued(bob) and b"id: 3-0" in queued(bob)
    assert b"id: 2-0" in queued(admin) and b"id: 3-0" in queued(admin)


def test_every_recipient_gets_the_same_bytes_object() -> None:
    router = make_router()
    a, b = conn("a", "t:x"), conn("b", "t:x")
    router.add(a)
    router.add(b)
    router.route(envelope("1-0", "t:x"))
    assert a._chunks[0] is b._chunks[0]  # encoded once, shared


def test_removed_connections_leave_no_index_entries() -> None:
    router = make_router()
    c = conn("alice", "t:news", "r:admin")
    router.add(c)
    router.remove(c)
    assert router._index == {} and router._sessions == {} and len(router) == 0


def test_connection_limit_closes_the_oldest_of_that_user_and_endpoint() -> None:
    router = make_router()
    first, second, other_endpoint = (
        conn("alice", endpoint="admin"),
        conn("alice", endpoint="admin"),
        conn("alice"),
    )
    router.add(first, limit=1)
    router.add(other_endpoint, limit=1)
    router.add(second, limit=1)
    assert first.close_reason == "replaced"
    assert second.close_reason is None and other_endpoint.close_reason is None


def test_a_client_beyond_its_buffer_is_closed_as_slow_and_its_buffer_freed() -> None:
    router = make_router()
    slow = conn("slow", limits=BufferLimits(max_bytes=10_000, max_events=1000))
    fast = conn("fast")
    router.add(slow)
    router.add(fast)
    for i in range(200):
        router.route(envelope(f"{i}-0", "*"))
    assert slow.close_reason == "slow" and slow.buffered_bytes == 0 and slow._chunks == []
    assert fast.close_reason is None and queued(fast).count(b"\n\n") == 200


def test_event_count_limit_applies_too() -> None:
    c = conn("a", limits=BufferLimits(max_bytes=1 << 20, max_events=3))
    for i in range(4):
        c.push(envelope(f"{i}-0", "*"))
    assert c.close_reason == "slow"


def test_sweep_sends_keepalives_only_to_quiet_streams() -> None:
    clock = ManualClock(frozen_at=T0)
    router = make_router(clock)
    quiet, busy = conn("a", clock=clock), conn("b", clock=clock)
    router.add(quiet)
    router.add(busy)
    clock.advance(31)
    busy.last_write_at = clock() - 1
    router.sweep()
    assert queued(quiet) == KEEPALIVE and queued(busy) == b""


@pytest.mark.parametrize(
    ("field", "reason"), [("expires_at", "expired"), ("deadline", "lifetime"), ("idle", "idle")]
)
def test_sweep_closes_expired_over_age_and_idle_streams(field: str, reason: str) -> None:
    clock = ManualClock(frozen_at=T0)
    router = make_router(clock, idle_timeout=3600)
    c = conn("a", clock=clock, expires_at=clock() + 10 if field == "expires_at" else None)
    if field == "deadline":
        c.deadline = clock() + 10
    router.add(c)
    clock.advance(9)
    router.sweep()
    assert c.close_reason is None
    clock.advance(3600 if field == "idle" else 2)
    router.sweep()
    assert c.close_reason == reason


def test_keepalives_do_not_count_as_activity_for_the_idle_timeout() -> None:
    clock = ManualClock(frozen_at=T0)
    router = make_router(clock, idle_timeout=100)
    c = conn("a", clock=clock)
    router.add(c)
    for _ in range(4):
        clock.advance(31)
        router.sweep()
        c._chunks.clear()
        c._bytes = 0
        c.last_write_at = clock()
    assert c.close_reason == "idle"


def test_replay_then_live_without_duplicates_or_gaps() -> None:
    c = conn("a", replaying=True)
    c.push(envelope("5-0", "*"))  # live events arriving while history is fetched
    c.push(envelope("6-0", "*"))
    c.finish_replay([envelope("4-0", "*"), envelope("5-0", "*")], after="3-0")
    c.push(envelope("7-0", "*"))
    ids = [line.split(b": ")[1] for line in queued(c).split(b"\n") if line.startswith(b"id:")]
    assert ids == [b"4-0", b"5-0", b"6-0", b"7-0"]


def test_replay_skips_what_the_client_already_has() -> None:
    c = conn("a", replaying=True)
    c.finish_replay([envelope("3-0", "*"), envelope("4-0", "*")], after="3-0")
    assert b"id: 3-0" not in queued(c) and b"id: 4-0" in queued(c)


async def test_next_chunk_joins_frames_and_ends_after_close() -> None:
    c = conn("a")
    c.push(envelope("1-0", "*"))
    c.push(envelope("2-0", "*"))
    chunk = await c.next_chunk()
    assert chunk is not None and chunk.count(b"id: ") == 2
    c.close("client")
    assert await c.next_chunk() is None


class RecordingTransport:
    """The calls an attached connection makes, recorded (the real socket path is covered over HTTP)."""

    def __init__(self, buffered: int = 0) -> None:
        self.writes: list[bytes] = []
        self.buffered = buffered
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def writelines(self, chunks: list[bytes]) -> None:
        self.writes.append(b"".join(chunks))  # one write, as a writev is

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str) -> object:
        return None  # no socket: the kernel-side drop (SO_LINGER) is covered over real sockets


async def test_attached_streams_get_one_write_per_burst_of_events() -> None:
    router = make_router()
    c = conn("a")
    router.add(c)
    transport = RecordingTransport()
    c.attach(transport, router.mark_dirty)  # type: ignore[arg-type]
    for i in range(3):
        router.route(envelope(f"{i}-0", "*"))
    assert transport.writes == []  # collected, not yet written
    await asyncio.sleep(0)  # the end of this loop iteration
    [write] = transport.writes
    assert write == b"".join(envelope(f"{i}-0", "*").chunk for i in range(3))


async def test_an_attached_stream_whose_socket_backs_up_is_cut_off() -> None:
    router = make_router()
    c = conn("a", limits=BufferLimits(max_bytes=1000))
    router.add(c)
    transport = RecordingTransport(buffered=5000)
    c.attach(transport, router.mark_dirty)  # type: ignore[arg-type]
    router.route(envelope("1-0", "*"))
    await asyncio.sleep(0)
    assert c.close_reason == "slow" and transport.aborted


async def test_keepalive_and_idle_decisions_follow_the_injected_clock() -> None:
    """Regression: writes were stamped with wall time while the sweep read the injected clock, so a stream
    written to never looked quiet (no keepalive) and never looked idle."""
    clock = ManualClock(frozen_at=T0)
    router = make_router(clock, keepalive=30, idle_timeout=100)
    c = conn("a", clock=clock)
    router.add(c)
    transport = RecordingTransport()
    c.attach(transport, router.mark_dirty)  # type: ignore[arg-type]
    router.route(envelope("1-0", "*"))
    await asyncio.sleep(0)  # the router flushes at the end of this loop iteration
    assert c.last_write_at == T0 and c.last_event_at == T0
    clock.advance(31)
    router.sweep()
    await asyncio.sleep(0)
    assert transport.writes[-1].endswith(KEEPALIVE + b"\r\n")  # a quiet stream got its keepalive
    clock.advance(70)
    router.sweep()
    assert c.close_reason == "idle"  # 101 s after its last event by the injected clock


async def test_the_sweep_expires_idle_history() -> None:
    calls: list[int] = []
    router = Router(keepalive=30, idle_timeout=0, clock=ManualClock(frozen_at=T0),
                    expire_history=lambda: calls.append(1) or 0)  # fmt: skip
    router.sweep()
    assert calls == [1]
