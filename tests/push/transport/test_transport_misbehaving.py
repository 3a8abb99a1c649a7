"""The transport against a server on the `h2` library that misbehaves precisely (h2peer.py).

Every scenario: each call ends within its deadline, and nothing the server never processed comes back as an
error that claims it was sent (`sent=True` only for requests in the server's `seen`).
"""

from __future__ import annotations

import asyncio

import pytest
from h2peer import Behaviour, H2Peer
from transport_peers import Outcome, assert_within, burst, errors

from tidings.push.transport import (
    PoolSettings,
    Response,
    ResponseTooLarge,
    Transport,
    TransportError,
    TransportTimeout,
)

FAST = PoolSettings(max_connections=4, connect_timeout=2.0, ping_after=0.3, ping_timeout=0.3, stall_after=0.3)


def transport(within: float = 5.0, settings: PoolSettings = FAST) -> Transport:
    return Transport(timeout=within, http1=False, settings=settings)


def assert_honest(outcomes: list[Outcome], peer: H2Peer) -> None:
    """No duplicates at the server; an error claims `sent` only if the server could have seen it."""
    assert max(peer.seen.values(), default=0) <= 1, "a request reached the server twice"
    for o in outcomes:
        if isinstance(o.answer, TransportError) and not o.answer.sent:
            assert o.ident not in peer.seen, f"{o.ident} was processed but reported as never sent"
        if o.ok:
            assert peer.seen[o.ident] == 1


async def test_max_concurrent_streams_zero_ends_every_call_by_its_deadline_and_replaces_the_connection() -> (
    None
):
    async with H2Peer(Behaviour(max_streams=0)) as peer:
        t = transport()
        try:
            outcomes = await burst(t, peer.url, 50, within=1.0)
        finally:
            await t.aclose()
    assert_within(outcomes, 1.0)
    failures = errors(outcomes)
    assert len(failures) == 50 and all(isinstance(e, TransportTimeout) and not e.sent for e in failures)
    assert "stream slot" in str(failures[0])
    assert peer.connections > 1  # the stalled connection was replaced, not waited on forever
    assert not peer.seen


async def test_streams_allowed_later_are_used_at_once() -> None:
    async with H2Peer(Behaviour(max_streams=0)) as peer:
        t = transport()
        try:
            pending = asyncio.ensure_future(burst(t, peer.url, 200, within=5.0))
            async with asyncio.timeout(5):
                while not peer.open:
                    await asyncio.sleep(0.01)
            peer.set_max_streams(100)
            outcomes = await pending
        finally:
            await t.aclose()
    assert_within(outcomes, 5.0)
    assert all(o.ok for o in outcomes)
    assert_honest(outcomes, peer)


@pytest.mark.parametrize("max_streams", [1, 100])
async def test_a_burst_against_few_streams_completes_with_one_wakeup_per_slot(max_streams: int) -> None:
    async with H2Peer(Behaviour(max_streams=max_streams)) as peer:
        t = transport(settings=PoolSettings(max_connections=1, connect_timeout=2.0))
        try:
            outcomes = await burst(t, peer.url, 2000, within=20.0)
            pool = next(iter(t._pools.values()))
        finally:
            await t.aclose()
    assert_within(outcomes, 20.0)
    assert all(o.ok for o in outcomes)
    assert_honest(outcomes, peer)
    # Each waiter is handed a slot exactly once: a freed slot wakes one waiter, not all of them.
    assert pool.wakeups <= 2000


async def test_bodies_over_a_16_byte_window_are_sent_as_credit_arrives() -> None:
    sizes = [0, 1, 15, 16, 17, 1000, 70_000, 200_000]
    async with H2Peer(Behaviour(window=16)) as peer:
        t = transport(within=20.0)
        try:
            outcomes = await burst(
                t, peer.url, len(sizes), within=20.0, path=lambda i: b"/echo", body=lambda i: b"z" * sizes[i]
            )
        finally:
            await t.aclose()
    assert_within(outcomes, 20.0)
    for o, size in zip(outcomes, sizes, strict=True):
        assert isinstance(o.answer, Response) and o.answer.body == b"z" * size


async def test_padding_trailers_and_continuation_frames_are_read() -> None:
    behaviour = Behaviour(padding=200, trailers=True, header_size=40_000)  # 40 KB of headers: CONTINUATION
    async with H2Peer(behaviour) as peer:
        t = transport()
        try:
            outcomes = await burst(t, peer.url, 20, within=5.0)
        finally:
            await t.aclose()
    assert_within(outcomes, 5.0)
    for o in outcomes:
        assert isinstance(o.answer, Response) and o.answer.status == 200
        assert o.answer.body == b'{"ok":true}' and o.answer.header(b"x-filler") == b"f" * 40_000


async def test_informational_answers_are_skipped() -> None:
    async with H2Peer(Behaviour(informational=3, status=410, body=b'{"reason":"Unregistered"}')) as peer:
        t = transport()
        try:
            outcomes = await burst(t, peer.url, 20, within=5.0)
        finally:
            await t.aclose()
    assert_within(outcomes, 5.0)
    assert all(isinstance(o.answer, Response) and o.answer.status == 410 for o in outcomes)
    assert_honest(outcomes, peer)


async def test_an_oversized_header_fails_only_its_own_stream() -> None:
    async with H2Peer(Behaviour(delay=0.05)) as peer:
        t = transport()
        try:
            outcomes = await burst(t, peer.url, 100, within=5.0, path=lambda i: b"/big" if i == 7 else b"/")
            later = await burst(t, peer.url, 10, within=5.0, start=100)
        finally:
            await t.aclose()
    assert_within(outcomes + later, 5.0)
    (failure,) = errors(outcomes)
    assert isinstance(failure, ResponseTooLarge) and failure.sent
    assert all(o.ok for o in later)
    assert peer.connections == 1  # the other 99 and the next 10 shared the same connection


@pytest.mark.parametrize("abrupt", [False, True], ids=["graceful", "abrupt"])
async def test_goaway_under_2000_concurrent_requests_resends_only_what_was_never_sent(abrupt: bool) -> None:
    async with H2Peer(Behaviour(goaway_after=300, abrupt=abrupt, delay=0.002)) as peer:
        t = transport(within=20.0)
        try:
            outcomes = await burst(t, peer.url, 2000, within=20.0)
        finally:
            await t.aclose()
    assert_within(outcomes, 20.0)
    assert_honest(outcomes, peer)
    failures = errors(outcomes)
    if not abrupt:
        assert not failures, failures[:3]  # graceful: every request answered, none counted twice
    else:
        # Abrupt: only requests the server had taken and dropped unanswered fail, and they say so.
        assert failures and all(e.sent for e in failures)
        assert len(failures) < 2000 // 300 * 100  # at most what was in flight at each GOAWAY
    assert peer.connections >= 2000 // 300


async def test_refused_streams_are_resent_elsewhere_without_counting() -> None:
    async with H2Peer(Behaviour(refuse_every=3)) as peer:
        t = transport()
        try:
            outcomes = await burst(t, peer.url, 300, within=5.0)
        finally:
            await t.aclose()
    assert_within(outcomes, 5.0)
    assert all(o.ok for o in outcomes)
    assert_honest(outcomes, peer)


async def test_a_server_killed_and_restarted_mid_burst() -> None:
    peer = await H2Peer(Behaviour(delay=0.01)).start()
    t = transport(within=5.0)
    try:
        first = asyncio.ensure_future(burst(t, peer.url, 1000, within=5.0))
        async with asyncio.timeout(10):  # mid-burst: some answered, most still in flight or waiting
            while len(peer.seen) < 50:
                await asyncio.sleep(0.005)
        await peer.kill()
        await peer.start()  # same port
        outcomes = await first
        after = await burst(t, peer.url, 100, within=5.0, start=1000)
    finally:
        await t.aclose()
        await peer.stop()
    assert_within(outcomes + after, 5.0)
    assert_honest(outcomes + after, peer)
    assert any(not o.ok for o in outcomes)  # the kill cost what was in flight...
    assert all(o.ok for o in after)  # ...and the transport came back by itself


async def test_a_silent_connection_is_detected_by_ping_and_replaced() -> None:
    async with H2Peer(Behaviour(silent=True)) as peer:
        t = transport(within=10.0)
        try:
            (outcome,) = await burst(t, peer.url, 1, within=10.0)
            assert isinstance(outcome.answer, TransportError) and "PING" in str(outcome.answer)
            assert outcome.elapsed < 5.0  # told by the PING deadline, well before the request's own
            peer.behaviour.silent = False
            (again,) = await burst(t, peer.url, 1, within=10.0, start=1)
        finally:
            await t.aclose()
    assert again.ok and peer.connections == 2


async def test_a_cancelled_request_frees_its_stream_at_once() -> None:
    async with H2Peer(Behaviour(delay=30.0, max_streams=1)) as peer:
        t = transport(within=30.0)
        try:
            task = asyncio.ensure_future(t.request(peer.url, b"/", [], b"x"))
            async with asyncio.timeout(5):
                while not peer.seen:
                    await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            pool = next(iter(t._pools.values()))
            assert [c.reserved for c in pool.connections] == [0]
            assert not pool.connections[0].streams
        finally:
            await t.aclose()
