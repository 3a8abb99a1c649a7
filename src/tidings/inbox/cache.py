"""Counts per reader, kept between changes: `hub.inbox.counts` answers from here until the reader's inbox changes.

Every write to an inbox (an item stored, a mark, a change of the user's mutes) is announced on the bus with
the channels it touched (`u:<user>`, `r:<role>`, `t:<topic>`, `*`), and every process marks those channels
changed here (`changed`) — the writing process itself after its commit and before it answers. A count is kept
with the tick at which it began; it is served only while none of its reader's channels changed since then. So
a count that was running while a change landed is never served (the change may have committed after its
snapshot), and a cached count never hides a write this process has heard of: the announcement follows the
commit, so any count that begins after it sees the write.

Entries also expire: when a mute of the user ends (`valid_until`: the count depends on the mutes), and after
`ttl` at the latest, which bounds what a change nobody announced costs (a writer that died between its commit
and its announcement, items the pruner deleted by age). A bus that lost messages (a gap) clears everything.
The whole cache is O(1) per call; its memory is bounded by `max_entries` readers and `max_channels` changed
channels (beyond that, every entry older than now is treated as changed).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tidings.inbox.models import Counts, Reader

__all__ = ["CountsCache"]


@dataclass(slots=True)
class _Entry:
    counts: Counts
    channels: tuple[str, ...]
    started: int
    expires: float


class CountsCache:
    """Per process. `begin()` before counting, `put()` after; `get()` answers while the entry holds."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        ttl: float = 30.0,
        max_entries: int = 10_000,
        max_channels: int = 100_000,
    ) -> None:
        self._clock = clock
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_channels = max_channels
        self._tick = 0
        self._floor = 0  # every channel counts as changed at this tick (after a clear or a trim)
        self._changed: dict[str, int] = {}
        self._entries: OrderedDict[Reader, _Entry] = OrderedDict()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def begin(self) -> int:
        """The tick a count starting now carries (pass it to `put`)."""
        return self._tick

    def get(self, reader: Reader) -> Counts | None:
        entry = self._entries.get(reader)
        if entry is None or entry.expires <= self._clock() or not self._unchanged(entry):
            if entry is not None:
                del self._entries[reader]
            self.misses += 1
            return None
        self._entries.move_to_end(reader)
        self.hits += 1
        return entry.counts

    def put(self, reader: Reader, counts: Counts, started: int, valid_until: float | None = None) -> None:
        """Keep `counts` of `reader`, counted from tick `started`, at most until `valid_until` (epoch s)."""
        expires = self._clock() + self.ttl
        if valid_until is not None:
            expires = min(expires, valid_until)
        entry = _Entry(counts, reader.channels(), started, expires)
        if not self._unchanged(entry):
            return  # changed while it was being counted: it would never be served
        self._entries[reader] = entry
        self._entries.move_to_end(reader)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def changed(self, channels: Iterable[str]) -> None:
        """Inboxes on these channels changed (their writes are committed)."""
        self._tick += 1
        for channel in channels:
            self._changed[channel] = self._tick
        if len(self._changed) > self.max_channels:
            self._changed.clear()
            self._floor = self._tick

    def clear(self) -> None:
        """Forget everything (the bus lost messages: any inbox may have changed unheard)."""
        self._tick += 1
        self._floor = self._tick
        self._changed.clear()
        self._entries.clear()

    def unchanged(self, channels: Iterable[str], started: int) -> bool:
        """Whether none of `channels` changed since tick `started` (for values kept beside the counts)."""
        floor, changed = self._floor, self._changed
        return floor <= started and all(changed.get(channel, floor) <= started for channel in channels)

    def _unchanged(self, entry: _Entry) -> bool:
        return self.unchanged(entry.channels, entry.started)
