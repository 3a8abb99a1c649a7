"""Per-channel replay history kept in process memory (the memory bus's; Redis keeps its own in Streams)."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Sequence

from .base import parse_id

EventKey = tuple[int, int]


class ChannelHistory:
    """Ring buffers per channel, bounded by count and age; knows when a gap makes a replay impossible."""

    def __init__(self, *, max_events: int, max_age: float, clock: Callable[[], float]) -> None:
        self._max_events = max_events
        self._max_age_ms = int(max_age * 1000)
        self._clock = clock
        self._buffers: dict[str, deque[tuple[EventKey, bytes]]] = {}
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
        if start < self._origin or start < horizon or start > self.newest():
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

    def newest(self) -> EventKey:
        newest = max((buffer[-1][0] for buffer in self._buffers.values() if buffer), default=(0, 0))
        return max(newest, self._last_assigned)

    def note_assigned(self, key: EventKey) -> None:
        self._last_assigned = key

    def expire(self) -> int:
        """Forget channels whose newest event is older than the age limit; returns how many."""
        horizon = (int(self._clock() * 1000) - self._max_age_ms, 0)
        stale = [name for name, buffer in self._buffers.items() if not buffer or buffer[-1][0] < horizon]
        for name in stale:
            del self._buffers[name]
            self._dropped.pop(name, None)
        return len(stale)
