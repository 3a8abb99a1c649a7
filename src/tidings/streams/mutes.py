"""What the router needs of the delivery policy: presence reports and the muted-scope filter.

The router tells this index when a stream opens and closes (`added`/`removed`, O(1)); it reports them to
presence and keeps, per user with a stream here, the scopes their streams must not get (muted, or `stream:
false`; `decide.stream_muted_scopes`). Fan-out stays per event: `screen` runs only while something is muted
or loading on this process (`active`), and then costs a dict lookup or two per event — an event whose scope
(and type) nobody here muted goes to exactly the recipients the channel index found. Critical events pass.

A user's preferences are loaded when their first stream here opens (batched: one query for every user
waiting), reloaded when any process changes them (`invalidate`, from the bus's control message), and
re-evaluated when a `muted_until` passes (`tick`, about once a second). Until the first load answers, events
for that user's new streams are held here, in order, and handed over filtered (at most `hold_limit`; beyond
it the stream is closed as slow and resumes from history). If loading fails, streams get everything (unset
preferences allow) and the load is retried.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field

from .. import metrics
from ..clock import Clock
from ..policy.decide import stream_muted_scopes
from ..policy.preferences import Preferences
from ..policy.presence import Presence
from ..wire import Envelope
from .connection import Connection

log = logging.getLogger("tidings.streams")

Load = Callable[[list[str]], Awaitable[Mapping[str, Preferences]]]
LOAD_BATCH = 500
RETRY_SECONDS = 5.0
TICK_SECONDS = 1.0
READY_TIMEOUT = 5.0  # a resume waits at most this long for the user's preferences, then goes on unfiltered


@dataclass(slots=True, eq=False)
class _User:
    """Kept per user with a stream here: small, because it is per stream for most (one stream per user)."""

    conns: list[Connection] = field(default_factory=list)  # a list: 64 bytes for one stream, a set 216
    prefs: Preferences | None = None
    muted: frozenset[str] = frozenset()
    loaded: bool = False
    generation: int = 0
    timer: float | None = None  # when a muted_until of theirs next passes
    waiters: list[asyncio.Future[None]] | None = None  # resumes waiting for the first load


class StreamPolicy:
    """Per process and hub; started and stopped with the hub. Works without a loader (nothing is muted)."""

    def __init__(
        self, *, clock: Clock, presence: Presence | None, load: Load | None, hold_limit: int = 1000
    ) -> None:
        self._clock = clock
        self._presence = presence
        self._load = load
        self._hold_limit = hold_limit
        self._users: dict[str, _User] = {}
        self._by_scope: dict[str, set[Connection]] = {}
        self._waiting: dict[Connection, list[Envelope]] = {}
        self._to_load: dict[str, None] = {}  # insertion-ordered set
        self._loading: set[str] = set()  # users whose load is in flight
        self._timers: list[tuple[float, str]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.active = False  # something is muted or loading here: the router calls screen()

    def __repr__(self) -> str:
        return f"<StreamPolicy users={len(self._users)} muted_scopes={len(self._by_scope)}>"

    # --- the router's calls ----------------------------------------------------------------------------

    def added(self, conn: Connection) -> None:
        user_id = conn.principal.user_id
        if self._presence is not None:
            self._presence.connected(user_id)
        user = self._users.get(user_id)
        if user is None:
            user = self._users[user_id] = _User()
            if self._load is None:
                user.loaded = True
            else:
                self._request(user_id)
        user.conns.append(conn)
        if user.loaded:
            self._index(conn, (), user.muted)
        else:
            self._waiting[conn] = []
            self.active = True

    def removed(self, conn: Connection) -> None:
        user_id = conn.principal.user_id
        if self._presence is not None:
            self._presence.disconnected(user_id)
        self._waiting.pop(conn, None)
        user = self._users.get(user_id)
        if user is not None and conn in user.conns:
            user.conns.remove(conn)
            self._index(conn, user.muted, ())
            if not user.conns:
                del self._users[user_id]
        self._refresh_active()

    def screen(self, envelope: Envelope, recipients: set[Connection]) -> tuple[set[Connection], int]:
        """The recipients that get `envelope` now (a new set when any are held or muted; never mutated), and how
        many were held for it until their user's preferences are known."""
        out = recipients
        held: list[Connection] = []
        waiting = self._waiting
        if waiting:  # walk the smaller side: a connect storm can leave many streams loading at once
            if len(recipients) < len(waiting):
                held = [conn for conn in recipients if conn in waiting]
            else:
                held = [conn for conn in waiting if conn in recipients]
            for conn in held:
                self._hold(conn, envelope)
            if held:
                out = out.difference(held)
        if self._by_scope and not envelope.critical:
            muted = self._by_scope.get(envelope.scope)
            if muted:
                out = out - muted
            if envelope.type != envelope.scope:
                muted = self._by_scope.get(envelope.type)
                if muted:
                    out = out - muted
        return out, len(held)

    def allows(self, conn: Connection, envelope: Envelope) -> bool:
        """Whether `conn` may get `envelope` (the replay of a resumed stream asks this per event)."""
        user = self._users.get(conn.principal.user_id)
        if user is None or envelope.critical or not user.muted:
            return True
        return envelope.scope not in user.muted and envelope.type not in user.muted

    def muted(self, user_id: str) -> frozenset[str] | None:
        """The scopes `user_id`'s streams here do not get now; None while unknown (no stream, or loading)."""
        user = self._users.get(user_id)
        return user.muted if user is not None and user.loaded else None

    def preferences(self, user_id: str) -> tuple[bool, Preferences | None]:
        """(known, preferences) of a user with a stream here; known is False without one, and while their
        preferences are (re)loading after a change (then only the store can say)."""
        user = self._users.get(user_id)
        if user is None or not user.loaded or user_id in self._to_load or user_id in self._loading:
            return False, None
        return True, user.prefs

    async def ready(self, conn: Connection) -> None:
        """Return once `conn`'s user's preferences are known (bounded: READY_TIMEOUT)."""
        user = self._users.get(conn.principal.user_id)
        if user is not None and not user.loaded:
            waiter = asyncio.get_running_loop().create_future()
            user.waiters = [*(user.waiters or ()), waiter]
            with suppress(TimeoutError):
                async with asyncio.timeout(READY_TIMEOUT):
                    await waiter

    def invalidate(self, user_id: str) -> None:
        """The user's preferences changed somewhere: reload them if they have a stream here."""
        user = self._users.get(user_id)
        if user is not None and self._load is not None:
            user.generation += 1
            self._request(user_id)

    # --- loading and timers ------------------------------------------------------------------------------

    def _request(self, user_id: str) -> None:
        self._to_load[user_id] = None
        self._wake.set()

    def _hold(self, conn: Connection, envelope: Envelope) -> None:
        held = self._waiting[conn]
        held.append(envelope)
        if len(held) > self._hold_limit:
            log.warning("stream %s: preferences still loading after %d events; closed", conn.id, len(held))
            del self._waiting[conn]
            conn.close("slow")

    def settle(self, user_id: str, prefs: Preferences | None) -> None:
        """Apply the user's (re)loaded preferences to their streams; release what was held for new ones."""
        user = self._users.get(user_id)
        if user is None:
            return
        now = self._clock()
        muted, changes = stream_muted_scopes(prefs, now)
        old, user.prefs, user.muted, user.loaded = user.muted, prefs, muted, True
        released = 0
        for conn in user.conns:
            held = self._waiting.pop(conn, None)
            self._index(conn, () if held is not None else old, muted)
            for envelope in held or ():
                if self.allows(conn, envelope):
                    conn.push(envelope)
                    released += 1
        if released:  # the router counted only what it handed over itself
            metrics.events_delivered_total.labels("sse").inc(released)
        if changes is not None and changes != user.timer:
            self._schedule(changes, user_id)
        user.timer = changes
        waiters, user.waiters = user.waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)
        self._refresh_active()

    def tick(self, now: float) -> None:
        """Re-evaluate users whose mutes ended by `now` (a `muted_until` passed)."""
        while self._timers and self._timers[0][0] <= now:
            _, user_id = heapq.heappop(self._timers)
            user = self._users.get(user_id)
            if user is not None and user.loaded:
                user.timer = None
                self.settle(user_id, user.prefs)

    def _schedule(self, at: float, user_id: str) -> None:
        if len(self._timers) > 4 * len(self._users) + 1000:  # entries of users who left: rebuild, bounded
            self._timers = [(u.timer, name) for name, u in self._users.items() if u.timer is not None]
            heapq.heapify(self._timers)
        heapq.heappush(self._timers, (at, user_id))

    def _index(self, conn: Connection, old: Iterable[str], new: Iterable[str]) -> None:
        new = frozenset(new)
        for scope in old:
            if scope not in new:
                members = self._by_scope.get(scope)
                if members is not None:
                    members.discard(conn)
                    if not members:
                        del self._by_scope[scope]
        for scope in new:
            self._by_scope.setdefault(scope, set()).add(conn)

    def _refresh_active(self) -> None:
        self.active = bool(self._by_scope or self._waiting)

    async def load_pending(self) -> None:
        """Load the preferences of every user waiting for it (one query per LOAD_BATCH users)."""
        while self._to_load and self._load is not None:
            batch = list(self._to_load)[:LOAD_BATCH]
            for user_id in batch:
                del self._to_load[user_id]
            asked = {u: self._users[u].generation for u in batch if u in self._users}
            self._loading.update(asked)
            try:
                found = await self._load(list(asked))
            except Exception:  # the database is down: streams flow unfiltered, the load is retried
                log.warning(
                    "loading preferences of %d stream user(s) failed; retrying", len(asked), exc_info=True
                )
                for user_id in asked:
                    user = self._users.get(user_id)
                    if user is not None and not user.loaded:
                        self.settle(user_id, None)
                asyncio.get_running_loop().call_later(RETRY_SECONDS, self._retry, list(asked))
                return
            finally:
                self._loading.difference_update(asked)
            for user_id, generation in asked.items():
                user = self._users.get(user_id)
                if user is not None and user.generation == generation:
                    self.settle(user_id, found.get(user_id))

    def _retry(self, user_ids: list[str]) -> None:
        for user_id in user_ids:
            if user_id in self._users:
                self._request(user_id)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tidings-stream-policy")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            with suppress(TimeoutError):
                async with asyncio.timeout(TICK_SECONDS):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.load_pending()
                self.tick(self._clock())
            except Exception:  # the loop must outlive any one failure, or mutes silently freeze
                log.exception("stream policy: a round failed")
