"""Stream debounce before the bus: one nudge per window per (audience, scope), the latest state never lost.

For a batch that holds debounced events (`StreamDebounce.applies`), `publish` does, in order:

1. Every event gets its id from the bus, as always. A debounced event is published *addressed to nobody*: its
   record is in the bus's log (so its id is real, unique and ordered like any other) but no stream gets it.
2. Each debounced event is offered to its window (one atomic step; Lua on Redis). The first of a quiet period
   is delivered at once (the leading edge); later ones are merged into the window.
3. A delivery is an event of its own, published to the audience with a fresh id:
   `{"id", "type", "data": <merged>, "occurred_at", "debounced": {"count": n, "ids": [...]}}` — `ids` are the
   published ids it stands for (the newest `TIDINGS_DEBOUNCE_MAX_IDS`), `count` how many exactly.
   When the window closes with events merged, the flusher (one per server process; any process may close any
   window) publishes the trailing delivery the same way.

So `publish` returns, for a debounced event as for any other, the id the bus gave it — whether it was delivered
at once or merged; the delivery that carries it lists that id. Nothing is lost: an event offered while its
window is due but not yet closed goes out at once with everything held; a window whose trailing delivery
fails is handed out again (the store's lease); if the window store is unreachable, the event is delivered on
its own. The fan-out is unchanged: each delivery is one bus message, encoded once per process.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from ..clock import Clock
from ..errors import BusUnavailable
from ..events import EventIn, iso_utc
from ..policy.debounce import Closed, DebounceFlusher, DebounceStore, Merged
from ..policy.debounce_merge import single
from ..policy.windows import Defaults, audience_of, parse_key, stream_key, window_of
from ..wire import encode_tail

log = logging.getLogger("tidings.streams")

Publish = Callable[[Sequence[bytes]], Awaitable[list[str]]]


def delivery_tail(
    event_type: str, scope: str | None, channels: Sequence[str], merged: Merged, at: datetime
) -> bytes:
    """The bus message of one debounced delivery (leading or trailing)."""
    public: dict[str, object] = {"type": event_type, "data": merged.data, "occurred_at": iso_utc(at)}
    if scope is not None:
        public["scope"] = scope
    debounced: dict[str, object] = {"count": merged.count, "ids": list(merged.event_ids)}
    if merged.truncated:
        debounced["truncated"] = list(merged.truncated)
    public["debounced"] = debounced
    return encode_tail(event_type, channels, public, scope=scope)


class StreamDebounce:
    """The stream side of debounce for one hub: offers at publish, trailing deliveries from its flusher."""

    def __init__(
        self,
        store: DebounceStore,
        *,
        defaults: Defaults,
        publish: Publish,
        clock: Clock,
        poll_seconds: float = 0.1,
    ) -> None:
        self.store = store
        self.defaults = defaults
        self._publish = publish
        self._clock = clock
        self.flusher = DebounceFlusher(store, self._trailing, poll_seconds=poll_seconds, clock=clock)

    def applies(self, events: Sequence[EventIn]) -> bool:
        """Whether any event of the batch is debounced on streams (cheap: the hot path asks it every publish)."""
        defaults = self.defaults
        for event in events:
            if (event.debounce is not None or event.type in defaults) and window_of(
                event, defaults, "stream"
            ):
                return True
        return False

    async def publish(self, events: Sequence[EventIn], now: datetime) -> list[str]:
        """Publish a batch holding debounced events (see the module docstring); returns every event's id."""
        windows = [window_of(event, self.defaults, "stream") for event in events]
        tails = [
            encode_tail(
                e.type, () if w else e.to.channels(), e.public(now), scope=e.scope, critical=e.critical
            )
            for e, w in zip(events, windows, strict=True)
        ]
        ids = await self._publish(tails)
        deliveries: list[bytes] = []
        for event, event_id, window in zip(events, ids, windows, strict=True):
            if window is None:
                continue
            try:
                offer = await self.store.offer(
                    stream_key(event, window),
                    event_id,
                    event.data,
                    window=window.seconds,
                    max_wait=window.max_wait,
                )
            except BusUnavailable as exc:  # no window to hold it in: deliver it on its own, lose nothing
                log.warning("debounce unavailable (%s): event %s delivered undebounced", exc, event_id)
                merged: Merged | None = single(event_id, event.data)
            else:
                merged = offer.merged if offer.deliver else None
            if merged is not None:
                deliveries.append(delivery_tail(event.type, event.scope, event.to.channels(), merged, now))
        if deliveries:
            await self._publish(deliveries)
        return ids

    async def _trailing(self, closed: Closed) -> None:
        """A window closed with events merged: publish its trailing delivery (raising leaves it for a retry)."""
        _, event_type, _group, scope, audience = parse_key(closed.key)
        channels = audience_of(audience).channels()
        at = datetime.fromtimestamp(closed.closed_at, UTC)
        await self._publish([delivery_tail(event_type, scope, channels, closed.merged, at)])

    async def start(self) -> None:
        await self.flusher.start()

    async def stop(self) -> None:
        await self.flusher.stop()
        await self.store.close()
