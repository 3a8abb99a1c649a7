"""Request deadlines on one timer: `asyncio.timeout` semantics without a timer per request.

    deadline = deadlines.start(when)          # in the task that makes the request
    try:
        ... await ...
    except asyncio.CancelledError:
        if deadline.timed_out():              # our cancellation, not the caller's
            raise TimeoutError from None
        raise
    finally:
        deadline.finish()

`asyncio.timeout` arms and cancels a loop timer per request, a few µs of the sender's CPU per push. Requests
through one transport mostly share its timeout, so their deadlines arrive in order: they wait in a queue behind
one timer, set for the oldest deadline still pending; a deadline earlier than the last one queued gets a timer
of its own. When a deadline passes, its task is cancelled; `timed_out` tells that cancellation from any other,
as asyncio.timeout does (Task.cancelling/uncancel), so the CancelledError cleanup of everything awaited inside
runs as before. A finished request leaves the queue when it reaches the front: behind one that hangs, finished
ones wait (a small object each, without their task) until the hanging one's deadline passes.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Deadline:
    __slots__ = ("cancelling", "expired", "finished", "handle", "task", "when")

    def __init__(self, when: float, task: asyncio.Task[object]) -> None:
        self.when = when
        self.task: asyncio.Task[object] | None = task
        self.cancelling = task.cancelling()
        self.expired = False
        self.finished = False
        self.handle: asyncio.TimerHandle | None = None

    def expire(self) -> None:
        if not self.finished and self.task is not None:
            self.expired = True
            self.task.cancel()

    def timed_out(self) -> bool:
        """In the CancelledError handler: whether the cancellation was this deadline's (and only that)."""
        return self.expired and self.task is not None and self.task.uncancel() <= self.cancelling

    def finish(self) -> None:
        self.finished = True
        self.task = None  # a finished request's task is not kept alive by the queue
        if self.handle is not None:
            self.handle.cancel()


class Deadlines:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: deque[Deadline] = deque()
        self.timer: asyncio.TimerHandle | None = None

    def start(self, when: float) -> Deadline:
        task = asyncio.current_task(self.loop)
        assert task is not None, "a deadline needs a task"
        deadline = Deadline(when, task)
        queue = self.queue
        while queue and queue[0].finished:
            queue.popleft()
        if queue and when < queue[-1].when:  # out of order (a shorter `within`): a timer of its own
            deadline.handle = self.loop.call_at(when, deadline.expire)
            return deadline
        queue.append(deadline)
        if self.timer is None:
            self.timer = self.loop.call_at(when, self._fire)
        return deadline

    def _fire(self) -> None:
        self.timer = None
        now = self.loop.time()
        queue = self.queue
        while queue and (queue[0].finished or queue[0].when <= now):
            queue.popleft().expire()
        if queue:
            self.timer = self.loop.call_at(queue[0].when, self._fire)
