"""Resuming a stream: replay what a reconnecting client missed, or tell it plainly that we cannot.

The connection holds live events that arrive while the history is read (`Connection(replaying=True)`), then
takes the replay and the held events in id order without duplicates, so the seam between history and live is
exact. When the history cannot cover the gap (too old, trimmed, unknown id, broker down) the client gets
`event: reset` — refetch your state — and then the live stream: never a silent gap.
"""

from __future__ import annotations

from collections.abc import Callable

from ..bus import Bus
from ..clock import Clock
from ..errors import BusUnavailable
from ..wire import Envelope, reset_frame
from .connection import Connection


async def replay(
    conn: Connection,
    bus: Bus,
    last_event_id: str,
    clock: Clock,
    allow: Callable[[Envelope], bool] | None = None,
) -> None:
    """Queue on `conn` the events after `last_event_id` on its channels, or a reset; `allow` filters the
    replayed events (muted scopes: live events were filtered by the router already)."""
    try:
        messages = await bus.history(last_event_id, conn.channels)
    except BusUnavailable:
        messages = None
    if messages is None:
        conn.send_comment(reset_frame())
        conn.finish_replay((), None)
    else:
        replayed = (Envelope.parse(m, clock) for m in messages)
        if allow is not None:
            replayed = (envelope for envelope in replayed if allow(envelope))
        conn.finish_replay(replayed, last_event_id)
