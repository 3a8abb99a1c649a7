"""Deadlines: asyncio.timeout's semantics (each request ends at its own deadline, a caller's cancellation stays a
cancellation) on one timer for deadlines that arrive in order, and a timer of its own for one that does not."""

from __future__ import annotations

import asyncio

import pytest

from tidings.push.transport.deadlines import Deadlines


async def _request(deadlines: Deadlines, within: float, never: asyncio.Event) -> tuple[str, float]:
    """Waits for what never comes; returns how it ended and when (loop time)."""
    loop = asyncio.get_running_loop()
    deadline = deadlines.start(loop.time() + within)
    try:
        await never.wait()
        return "answered", loop.time()
    except asyncio.CancelledError:
        if deadline.timed_out():
            return "timeout", loop.time()
        raise
    finally:
        deadline.finish()


async def test_each_request_ends_at_its_own_deadline_in_or_out_of_order() -> None:
    loop = asyncio.get_running_loop()
    deadlines, never = Deadlines(loop), asyncio.Event()
    start = loop.time()
    withins = [0.3, 0.4, 0.1, 0.5, 0.2]  # 0.1 and 0.2 arrive after later deadlines: out of order
    results = await asyncio.gather(*(_request(deadlines, w, never) for w in withins))
    for within, (how, at) in zip(withins, results, strict=True):
        assert how == "timeout"
        assert within <= at - start < within + 0.08, (within, at - start)
    assert not deadlines.queue  # nothing left behind the timer


async def test_finished_requests_are_not_cancelled_and_not_kept() -> None:
    loop = asyncio.get_running_loop()
    deadlines, answer = Deadlines(loop), asyncio.Event()
    tasks = [loop.create_task(_request(deadlines, 0.2, answer)) for _ in range(50)]
    await asyncio.sleep(0)  # every task has started its deadline
    answer.set()
    assert [how for how, _ in await asyncio.gather(*tasks)] == ["answered"] * 50
    assert all(d.task is None for d in deadlines.queue)  # the queue does not keep their tasks alive
    late = await _request(deadlines, 0.05, asyncio.Event())  # and the timer still serves the next one
    assert late[0] == "timeout"
    assert len(deadlines.queue) <= 1


async def test_the_callers_cancellation_stays_a_cancellation() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    task = loop.create_task(_request(deadlines, 5.0, asyncio.Event()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
