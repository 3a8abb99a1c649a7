"""Per-channel replay history kept in process memory (the memory bus's; Redis keeps its own in Streams).

Memory is bounded by the history window, not by how many channels were ever used: channels are kept in the
order they were last written, so the router's sweep forgets the stale ones from the front in O(what expires).
A resume reads only the channels it asks for.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from collections.abc import Sequence

from ..clock import Clock
from ..wire import parse_id

EventKey = tuple[int, int]


class ChannelHistory:
    """Ring buffers per channel, bounded by count and age; knows when a gap makes a replay impossible."""

    def __init__(self, *, max_events: int, max_age: float, clock: Clock) -> None:
        self._max_events = max_events
        self._max_age_ms = int(max_age * 1000)
        self._clock = clock
        self._buffers: OrderedDict[str, deque[tuple[EventKey, bytes]]] = OrderedDict()  # least recent first
        self._dropped: dict[
            str, EventKey
        ] = {}  # newest id evicted per channel: a replay from before it has a gap
        self._origin: EventKey = (int(clock() * 1000), 0)  # nothing before this is known to this process
        self._last_assigned: EventKey = (0, 0)

    def append(self, key: EventKey, channels: Sequence[str], message: bytes) -> None:
        if self._max_events == 0:
            return
        for channel in channels:
            buffer = self._buffers.get(channel)
            if buffer is None:
                buffer = self._buffers[channel] = deque()
            else:
                self._buffers.move_to_end(channel)
            if len(buffer) == self._max_events:
                self._dropped[channel] = buffer.popleft()[0]
            buffer.append((key, message))

    def since(self, after: str, channels: Sequence[str]) -> list[bytes] | None:
        """Messages newer than `after` on `channels`, in id order, each once; None if some may be missing."""
        try:
            start = parse_id(after)
        except ValueError:
            return None
        horizon = (int(self._clock() * 1000) - self._max_age_ms, 0)
        if self._max_events == 0:
            return None  # no history is kept: nothing can be vouched for
        if start < self._origin or start < horizon or start > self._last_assigned:
            return None
        streams = []
        for channel in channels:
            if self._dropped.get(channel, (-1, -1)) >= start:
                return None
            buffer = self._buffers.get(channel)
            if buffer:
                streams.append([entry for entry in buffer if entry[0] > start])
        merged: list[bytes] = []
        last: EventKey | None = None
        for key, message in heapq.merge(*streams):
            if key != last:  # an event addressed to two of our channels is in both buffers
                merged.append(message)
                last = key
        return merged

    def note_assigned(self, key: EventKey) -> None:
        """The newest id issued: a resume from beyond it names an event that does not exist."""
        self._last_assigned = key

    def expire(self) -> int:
        """Forget channels whose newest event is older than the age limit; returns how many."""
        horizon = (int(self._clock() * 1000) - self._max_age_ms, 0)
        expired = 0
        while self._buffers:
            name, buffer = next(iter(self._buffers.items()))
            if buffer and buffer[-1][0] >= horizon:
                break  # the rest were written later still
            del self._buffers[name]
            self._dropped.pop(name, None)
            expired += 1
        return expired

    def __len__(self) -> int:
        """How many channels are held."""
        return len(self._buffers)
