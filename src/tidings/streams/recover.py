"""After the bus lost events it could not catch up on: recover each stream from its channels' history, or reset it.

The bus delivered every event up to `since` (its watermark when the subscription went) and none after it, to
every stream of this process alike. So what each stream owes its client is exactly a resume from `since` on its
own channels. Streams whose channels' history still covers that stretch get the missed events, in order, once
(live events are held meanwhile and joined without duplicates, as in a resume); only the others get
`event: reset` with `events_lost`. A trimmed global log thus costs a reset only to the streams whose channels
really lost something, not to every stream of the process.

Cost and budget: one history read per distinct channel set (streams of one user share theirs), at most
`CONCURRENT_READS` at a time, each bounded by `READ_TIMEOUT` (a reset when it runs out). A recovery is rare (an
outage or a paused process); streams already in a resume of their own are left to it — the gap makes that resume
answer a reset.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

from ..bus import Bus
from ..clock import Clock
from ..errors import BusUnavailable
from ..wire import EVENTS_LOST, Envelope, reset_frame
from .connection import Connection
from .router import Router

log = logging.getLogger("tidings.streams")

CONCURRENT_READS = 16
READ_TIMEOUT = 10.0  # seconds for one history read (the bus's own resume settles within 3 s)

Allow = Callable[[Connection, Envelope], bool]


class GapRecovery:
    """The hub's answer to the bus's `tidings.gap` control message, for the streams of this process."""

    def __init__(self, router: Router, bus: Bus, clock: Clock) -> None:
        self._router, self._bus, self._clock = router, bus, clock
        self._running: set[asyncio.Task[tuple[int, int]]] = set()

    def on_gap(self, body: Mapping[str, object]) -> None:
        """Called in the bus's delivery callback, in order: streams hold live events from here on."""
        since, reason = body.get("since"), body.get("reason")
        if not isinstance(since, str):  # nothing to resume from: any event before may be missing
            reset = self._router.reset_all(reset_frame(EVENTS_LOST))
            log.warning("bus gap: %d streams reset", reset, extra={"reason": reason})
            return
        held = hold_all(self._router.connections())
        policy = self._router.policy
        allow = policy.allows if policy is not None else None
        task = asyncio.create_task(recover(held, self._bus, since, self._clock, allow))
        self._running.add(task)
        task.add_done_callback(lambda t: self._done(t, reason))

    def _done(self, task: asyncio.Task[tuple[int, int]], reason: object) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is None:
            recovered, reset = task.result()
            log.warning(
                "bus gap: %d streams recovered from history, %d reset",
                recovered,
                reset,
                extra={"reason": reason},
            )

    async def stop(self) -> None:
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)


def hold_all(connections: Iterable[Connection]) -> list[Connection]:
    """Start holding live events on every open stream not already resuming; returns them. Called in the bus's
    delivery callback, before any event after the gap is routed, so nothing live slips past the recovery."""
    held = [c for c in connections if not c.closed and not c.replaying]
    for conn in held:
        conn.hold()
    return held


async def recover(
    held: list[Connection], bus: Bus, since: str, clock: Clock, allow: Allow | None = None
) -> tuple[int, int]:
    """Queue on each of `held` what it missed after `since`, or a reset; returns (recovered, reset)."""
    by_channels: dict[tuple[str, ...], list[Connection]] = defaultdict(list)
    for conn in held:
        by_channels[conn.channels].append(conn)
    slots = asyncio.Semaphore(CONCURRENT_READS)
    outcomes = await asyncio.gather(
        *(
            _recover_group(group, channels, bus, since, clock, allow, slots)
            for channels, group in by_channels.items()
        )
    )
    recovered = sum(len(g) for g, ok in zip(by_channels.values(), outcomes, strict=True) if ok)
    return recovered, len(held) - recovered


async def _recover_group(
    group: list[Connection],
    channels: tuple[str, ...],
    bus: Bus,
    since: str,
    clock: Clock,
    allow: Allow | None,
    slots: asyncio.Semaphore,
) -> bool:
    messages: list[bytes] | None
    try:
        async with slots, asyncio.timeout(READ_TIMEOUT):
            messages = await bus.history(since, channels)
    except (BusUnavailable, TimeoutError):
        messages = None
    except Exception:  # a recovery bug must not leave streams holding forever: reset them
        log.exception("recovering streams after a bus gap failed")
        messages = None
    if messages is None:
        for conn in group:
            conn.send_comment(reset_frame(EVENTS_LOST))
            conn.finish_replay((), None)
        return False
    envelopes = [Envelope.parse(m, clock) for m in messages]  # parsed once for the whole group
    for conn in group:
        replayed = envelopes if allow is None else [e for e in envelopes if allow(conn, e)]
        conn.finish_replay(replayed, since, EVENTS_LOST)
    return True
