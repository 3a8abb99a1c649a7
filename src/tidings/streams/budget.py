"""The process-wide budget of bytes buffered by streams: O(1) accounting, furthest-behind streams cut first.

Each stream reports how many bytes it holds whenever that number changes (the transport's buffer after a socket
write under `tidings serve`, its own queued chunks on the ASGI path). The budget keeps the total and files every
stream that holds anything under its size class (the bit length of its byte count), so an update is a subtraction
and at most two dict operations, and finding the furthest-behind stream never scans the streams: it is the oldest
entry of the highest non-empty class (furthest behind within a factor of two). When the total passes the cap,
those streams are closed as `slow` — they resume from history when they reconnect — until it fits again.

Only a stream that has been behind for `GRACE` seconds is cut for the budget: a burst larger than the kernel's
socket buffer sits in every recipient's transport for the moment it takes a reading client to drain it, and the
same shared chunk counts once per stream (the real memory is far smaller), so cutting on the instant would close
healthy clients. The router's sweep re-measures the streams that are behind once a second (a drained transport
does not tell us) and cuts what is still over; a stream is always re-measured before it is cut.

Freed buffers stay in the C allocator's arenas (glibc keeps them: measured, 3,000 cut streams left 3.8 GB of RSS
until `malloc_trim`); `release_free_memory` hands them back to the system, and the router calls it after cuts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..clock import Clock

if TYPE_CHECKING:
    from .connection import Connection

SIZE_CLASSES = 64  # bit lengths of a byte count
GRACE = 1.0  # seconds a stream must have been behind before the budget may cut it


class StreamBudget:
    """Bytes buffered by all streams of this process, bounded by `max_bytes` (0 = unbounded, counted only)."""

    def __init__(self, max_bytes: int, clock: Clock) -> None:
        self.max_bytes = max_bytes
        self.total = 0
        self.cuts = 0  # streams closed to keep the budget
        self.released = 0  # bytes held by streams that were cut or ended, since the last `take_released`
        self._clock = clock
        self._classes: list[dict[Connection, None]] = [{} for _ in range(SIZE_CLASSES)]
        self._shedding = False

    def update(self, conn: Connection, size: int) -> None:
        """`conn` now holds `size` bytes (its caller checked that this differs from `conn.counted`)."""
        old = conn.counted
        conn.counted = size
        self.total += size - old
        old_class, new_class = old.bit_length(), size.bit_length()
        if old_class != new_class:
            if old_class:
                del self._classes[old_class][conn]
            else:
                conn.behind_since = self._clock()  # a clock read only when a stream falls behind
            if new_class:
                self._classes[new_class][conn] = None
        if size > old and self.max_bytes and self.total > self.max_bytes and not self._shedding:
            self.shed()

    def release(self, conn: Connection) -> None:
        """`conn` was cut or has ended: what it held is freed (and counts towards the next heap trim)."""
        if conn.counted:
            self.released += conn.counted
            self.update(conn, 0)

    def take_released(self) -> int:
        """Bytes released since the last call (the router decides from this when to trim the heap)."""
        released, self.released = self.released, 0
        return released

    def behind(self) -> list[Connection]:
        """The streams holding anything, furthest behind first."""
        return [conn for members in reversed(self._classes) for conn in members]

    def refresh(self) -> None:
        """Re-measure every stream that is behind (the sweep's call, once a second), then keep the cap."""
        for conn in self.behind():
            conn.measure()
        if self.max_bytes and self.total > self.max_bytes:
            self.shed()

    def shed(self) -> None:
        """Cut the furthest-behind streams (behind for `GRACE` at least) until the total fits."""
        self._shedding = True
        try:
            now = self._clock()
            while self.total > self.max_bytes:
                conn = self._next_victim(now)
                if conn is None:
                    return  # the rest fell behind just now: the sweep looks again within a second
                before = conn.counted
                conn.measure()  # may re-file it lower (it drained since its last write)
                if conn.counted >= before:  # still as far behind as it looked: cut it
                    self.cuts += 1
                    conn.close("slow")  # releases what it held
                    self.release(conn)  # in case it could not (a transport already closing)
        finally:
            self._shedding = False

    def _next_victim(self, now: float) -> Connection | None:
        """The oldest stream of the highest size class whose oldest member has been behind long enough."""
        for members in reversed(self._classes):
            if members:
                conn = next(iter(members))
                if now - conn.behind_since >= GRACE:
                    return conn
        return None


def _load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None elsewhere (musl, macOS): there freed memory goes back on its own or not."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_malloc_trim = _load_malloc_trim()


def release_free_memory() -> bool:
    """Return the allocator's free pages to the system; False where that is not possible."""
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True
