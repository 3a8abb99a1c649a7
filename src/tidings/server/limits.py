"""What keeps `tidings serve` answering under hostile clients: a deadline and a size limit on request headers, a
cap on connections still sending them, and a reserve of file descriptors for saying "come back later".

uvicorn's httptools protocol has none of these: a socket that sends its headers one byte at a time (slowloris) is
held forever, an unfinished header grows without bound, and once the process runs out of file descriptors accepts
fail for everyone. uvicorn's own `limit_concurrency` counts every connection (our streams are long-lived ones),
answers in plain text and only after the headers arrived, so it cannot tell a slow sender from a stream; the
header deadline, size and pending cap are enforced here, per server, by `HeaderGuard`, which
`TidingsHttpProtocol` (protocol.py) reports to.

The connections still sending headers are kept in arrival order (a dict), so the oldest is always first: the
periodic check stops at the first one still in time, and making room costs one pop — nothing here scans every
connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..config import Settings

log = logging.getLogger("tidings.server")

LOW_FD_LIMIT = 4096  # below this many open files, say so at start: each stream is one
RECOUNT_PERIOD = 0.5  # seconds between two counts of /proc/self/fd when close to the limit
RECOUNT_ANYWAY = 5.0  # ... and when not (other descriptors come and go: Redis, the database, files)
RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True, slots=True)
class ServerLimits:
    header_timeout: float = 10.0
    max_header_bytes: int = 64 * 1024
    max_pending_headers: int = 256
    fd_reserve: int = 64

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerLimits:
        return cls(
            header_timeout=settings.server_header_timeout,
            max_header_bytes=settings.server_max_header_bytes,
            max_pending_headers=settings.server_max_pending_headers,
            fd_reserve=settings.server_fd_reserve,
        )

    @property
    def eviction_age(self) -> float:
        """A connection sending headers for less than this is never closed to make room: it is likely a client
        whose headers are already on their way (a busy event loop has not read them yet)."""
        return min(1.0, self.header_timeout / 2)


class HeaderSender(Protocol):
    def refuse(self, status: int, code: str, message: str) -> None: ...


class HeaderGuard:
    """One per server: the connections still sending headers, oldest first, and the file-descriptor budget."""

    def __init__(
        self,
        limits: ServerLimits,
        loop: asyncio.AbstractEventLoop,
        *,
        fd_limit: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        count_fds: Callable[[], int | None] | None = None,
    ) -> None:
        self.limits = limits
        self._loop = loop
        self._clock = clock
        self._pending: dict[HeaderSender, float] = {}
        self._sweeping = False
        self.fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0] if fd_limit is None else fd_limit
        self._count_fds = count_fds or _count_open_fds
        self._other_fds = self._count_fds() or 16  # descriptors that are not client connections
        self._counted_at = clock()
        self.timed_out = self.evicted = self.overloaded = 0

    # --- connections sending headers -------------------------------------------------------------------------

    def started(self, conn: HeaderSender) -> None:
        """`conn` began a request (or connected): it has `header_timeout` to finish its headers."""
        self._pending[conn] = self._clock()
        if len(self._pending) > self.limits.max_pending_headers:
            self._evict_oldest()
        if not self._sweeping:
            self._sweeping = True
            self._loop.call_later(self._period, self._sweep)

    def finished(self, conn: HeaderSender) -> None:
        self._pending.pop(conn, None)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _evict_oldest(self) -> bool:
        """Close the connection that has been sending headers longest, if it has been at it long enough."""
        oldest = next(iter(self._pending), None)
        if oldest is None or self._clock() - self._pending[oldest] < self.limits.eviction_age:
            return False
        del self._pending[oldest]
        self.evicted += 1
        oldest.refuse(408, "request_timeout", "too many connections are sending headers; send yours at once")
        return True

    @property
    def _period(self) -> float:
        return min(1.0, self.limits.header_timeout / 4)

    def _sweep(self) -> None:
        """Close what ran out of time, and what is over the cap; then come back while anything is pending."""
        deadline = self._clock() - self.limits.header_timeout
        while self._pending:
            conn, started = next(iter(self._pending.items()))
            if started > deadline:
                break
            del self._pending[conn]
            self.timed_out += 1
            conn.refuse(408, "request_timeout", "the request headers took too long")
        while len(self._pending) > self.limits.max_pending_headers and self._evict_oldest():
            pass
        if self._pending:
            self._loop.call_later(self._period, self._sweep)
        else:
            self._sweeping = False

    # --- file descriptors -------------------------------------------------------------------------------------

    def make_room(self, connections: int) -> None:
        """A connection arrived: close the slowest header sender when file descriptors run short."""
        if self.near_fd_limit(connections):
            self._evict_oldest()

    def near_fd_limit(self, connections: int) -> bool:
        """Within `fd_reserve` of the open-files limit? `connections` is the server's open connections; the other
        descriptors (listening socket, Redis, database, logs) are counted now and then, not per connection."""
        threshold = self.fd_limit - self.limits.fd_reserve
        now = self._clock()
        since = now - self._counted_at
        if connections + self._other_fds < threshold - self.limits.fd_reserve and since < RECOUNT_ANYWAY:
            return False
        if since >= RECOUNT_PERIOD:
            self._counted_at = now
            counted = self._count_fds()
            if counted is not None:
                self._other_fds = max(0, counted - connections)
        return connections + self._other_fds >= threshold


_GUARD = "tidings_header_guard"


def guard_for(server_state: object, limits: ServerLimits, loop: asyncio.AbstractEventLoop) -> HeaderGuard:
    """The guard of the server owning `server_state` (uvicorn's state shared by one server's connections), kept
    on that state: one attribute read per call, and nothing on the connection (see protocol.py)."""
    guard: HeaderGuard | None = getattr(server_state, _GUARD, None)
    if guard is None:
        guard = HeaderGuard(limits, loop)
        setattr(server_state, _GUARD, guard)
    return guard


def _count_open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux: the estimate keeps its last figure
        return None


def raise_fd_limit() -> int:
    """Raise this process's open-files limit to its hard limit (each stream holds a socket); warn when low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else _kernel_max_open()
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit", extra={"limit": soft, "error": str(exc)})
    if soft < LOW_FD_LIMIT:
        log.warning(
            f"the open-files limit is {soft}: this process can hold fewer than {soft} streams; beyond that new "
            "requests get 503. Raise the hard limit (LimitNOFILE= in systemd, ulimit -Hn, --ulimit in Docker)"
        )
    return soft


def _kernel_max_open() -> int:
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20
