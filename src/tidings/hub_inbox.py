"""`hub.inbox`: the notification inbox as the hub offers it, and the hub's side of keeping events in it.

- Reads for a reader — a token's `Principal` (its user, roles, and the topics its claim names exactly), a
  `Reader`, or a user id with roles and topics: `list`, and `counts` with the user's mutes applied (items of a
  muted scope or type are listed but count as neither unseen nor unread, unless critical), answered from the
  per-process counts cache (inbox/cache.py) until the reader's inbox changes.
- Writes: `mark` (seen, read, archive; ids or `all`) and `add` (an item outside publish).
- `publish`: the hub's publish path for events that ask to be kept. The items are written in a transaction
  opened before the events are sent and committed right after, so a database outage is a 503 before anything
  was published (a retry duplicates nothing), and a failure after the send names the events (InboxNotStored).
- Every committed write is announced on the bus (`tidings.inbox`, with the channels it touched): each process
  marks them changed in its counts cache and tells its streams there (`streams/inbox_live.py`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from . import wire
from .auth import Principal
from .db import write_tx
from .errors import BusUnavailable, InboxNotStored, StoreUnavailable, database_errors
from .events import EventIn
from .inbox import Counts, InboxStore, Mark, MarkResult, NewItem, Page, Reader, audience_channels
from .inbox.cache import CountsCache
from .policy.decide import inbox_muted_scopes
from .streams.inbox_live import InboxLive

if TYPE_CHECKING:
    from .hub import Hub
    from .policy.preferences import Preferences

log = logging.getLogger("tidings.hub")

Who = Principal | Reader | str
LoadPreferences = Callable[[str], Awaitable["Preferences | None"]]
_PENDING = "0-0"  # an item's event id until the bus assigned the real one
Ids = list[str]  # (spelled once here: the class's own `list` method would shadow the builtin in annotations)


class HubInbox:
    """Built by the hub at start; `hub.inbox` while it runs."""

    def __init__(self, hub: Hub, store: InboxStore, load_preferences: LoadPreferences) -> None:
        self.store = store
        self._hub = hub
        self._load_preferences = load_preferences
        self.cache = CountsCache(clock=hub.clock)
        # users' preferences as loaded for a count, kept like the counts; a change marks `p:<user>` (and `u:<user>`,
        # the counts depend on the mutes), an item only `u:<user>`
        self._prefs: dict[str, tuple[Preferences | None, int, float]] = {}
        self.live = InboxLive(hub.streams, self.counts, clock=hub.clock)
        self._origin = os.urandom(6).hex()  # this process's announcements, recognised when they come back

    def start(self) -> None:
        self.live.start()

    async def stop(self) -> None:
        await self.live.stop()

    # --- reads -------------------------------------------------------------------------------------------

    @staticmethod
    def reader(who: Who, *, roles: Iterable[str] = (), topics: Iterable[str] = ()) -> Reader:
        """The Reader of a token's principal, or of a user id with the roles and topics given."""
        if isinstance(who, Reader):
            return who
        if isinstance(who, Principal):
            return Reader.of(who)
        return Reader(who, frozenset(roles), frozenset(topics))

    async def list(
        self,
        who: Who,
        *,
        cursor: str | None = None,
        limit: int = 20,
        unread: bool = False,
        category: str | None = None,
        archived: bool = False,
    ) -> Page:
        """A page of the reader's inbox, newest first (`next_cursor` for the next); InvalidCursor for a bad one."""
        reader = self.reader(who)
        with database_errors():
            return await self.store.list(
                reader, cursor=cursor, limit=limit, unread_only=unread, category=category, archived=archived
            )

    async def counts(self, who: Who) -> Counts:
        """Unseen and unread items of the reader's inbox (the user's mutes applied), by category."""
        reader = self.reader(who)
        cached = self.cache.get(reader)
        if cached is not None:
            return cached
        started = self.cache.begin()
        muted, until = inbox_muted_scopes(await self._preferences(reader.user_id), self._hub.clock())
        with database_errors():
            counts = await self.store.counts(reader, exclude_scopes=muted)
        self.cache.put(reader, counts, started, until)
        return counts

    async def _preferences(self, user_id: str) -> Preferences | None:
        policy = self._hub.streams.policy  # a user with a stream here has theirs loaded, and kept current
        if policy is not None:
            known, prefs = policy.preferences(user_id)
            if known:
                return prefs
        channels, now = (f"p:{user_id}",), self._hub.clock()
        kept = self._prefs.get(user_id)
        if kept is not None and kept[2] > now and self.cache.unchanged(channels, kept[1]):
            return kept[0]
        started = self.cache.begin()
        with database_errors():
            prefs = await self._load_preferences(user_id)
        if len(self._prefs) >= self.cache.max_entries:
            self._prefs.clear()  # bounded; those still needed are loaded again
        self._prefs[user_id] = (prefs, started, now + self.cache.ttl)
        return prefs

    # --- writes ------------------------------------------------------------------------------------------

    async def mark(
        self, who: Who, mark: Mark, ids: Iterable[str] | Literal["all"], *, up_to: str | None = None
    ) -> MarkResult:
        """Mark the reader's items seen, read or archived: the ids named (ItemsNotFound if any is not in their
        inbox; nothing changes), or `all` up to the newest item (or `up_to`). Their streams hear of it."""
        reader = self.reader(who)
        with database_errors():
            result = await self.store.mark(reader, mark, ids, up_to=up_to)
        if result.items or result.up_to is not None:
            await self.announce([f"u:{reader.user_id}"])
        return result

    async def add(
        self,
        item: NewItem,
        *,
        users: Iterable[str] = (),
        roles: Iterable[str] = (),
        topics: Iterable[str] = (),
        broadcast: bool = False,
    ) -> str:
        """Keep an item without publishing an event (no stream event, no push); returns its id."""
        channels = audience_channels(users, roles, topics, broadcast)
        with database_errors():
            (item_id,) = await self.store.add_many([(item, channels)])
        await self.announce(channels)
        return item_id

    # --- publishing --------------------------------------------------------------------------------------

    async def publish(
        self, events: Sequence[EventIn], send: Callable[[], Awaitable[Ids]]
    ) -> tuple[Ids, InboxNotStored | None]:
        """`send()` the events (it assigns their ids) inside the transaction that keeps those asking for it.

        Returns their ids, and InboxNotStored when they were sent but their items could not be kept (the caller
        queues their pushes, then raises it); raises StoreUnavailable or BusUnavailable when nothing was sent.
        """
        kept = [(k, _item(event), event.to.channels()) for k, event in enumerate(events) if event.inbox]
        ids: Ids | None = None
        try:
            with database_errors("the inbox cannot keep events now"):
                async with write_tx(self.store.engine) as conn:
                    ids = await send()
                    batch = [(replace(item, event_id=ids[k]), channels) for k, item, channels in kept]
                    await self.store.add_in(conn, batch)
        except StoreUnavailable as exc:
            if ids is None:
                raise  # nothing was published
            log.error("inbox items not kept", extra={"event_ids": ids, "reason": str(exc)})
            unkept = InboxNotStored(ids)
            unkept.__cause__ = exc
            return ids, unkept
        await self.announce(dict.fromkeys(c for _, _, channels in kept for c in channels))
        return ids, None

    # --- announcements -----------------------------------------------------------------------------------

    async def announce(self, channels: Iterable[str]) -> None:
        """Tell every process (this one at once) that inboxes on `channels` changed; their streams hear of it."""
        channels = [*channels]
        self.cache.changed(channels)
        message = wire.control_message("inbox", {"channels": channels, "origin": self._origin})
        try:
            await self._hub.bus.publish([message])
        except BusUnavailable as exc:  # stored all the same; streams elsewhere learn at their next change
            log.warning("inbox change not announced (%s): streams on other processes keep old counts", exc)
            self.live.changed(channels)

    def on_announcement(self, body: dict[str, Any]) -> None:
        """A `tidings.inbox` control message from the bus (any process's, this one's included)."""
        channels = [c for c in body.get("channels") or () if isinstance(c, str)]
        if body.get("origin") != self._origin:
            self.cache.changed(channels)  # this process marked its own before it answered
        self.live.changed(channels)

    def on_preferences(self, user_id: str) -> None:
        """The user's preferences changed (their mutes decide what counts)."""
        self.cache.changed(preference_channels(user_id))
        self.live.changed([f"u:{user_id}"], quiet=True)  # told only where counts moved (no inbox: never)

    def on_gap(self) -> None:
        """The bus lost messages: any inbox may have changed unheard. Reset streams refetch; streams recovered
        from history (streams/recover.py) did not get lost announcements, so every local reader is counted
        again and told where the counts moved."""
        self.cache.clear()
        self.live.changed([wire.BROADCAST], quiet=True)


def preference_channels(user_id: str) -> list[str]:
    """What a change of the user's preferences changes: their preferences, and their counts."""
    return [f"p:{user_id}", f"u:{user_id}"]


def _item(event: EventIn) -> NewItem:
    spec = event.inbox
    assert spec is not None
    return NewItem(
        event_id=_PENDING, type=event.type, title=spec.title or "", body=spec.body or "", url=spec.url,
        icon=spec.icon, category=spec.category, data=spec.data, scope=event.effective_scope,
        critical=event.critical, occurred_at=event.occurred_at,
    )  # fmt: skip
