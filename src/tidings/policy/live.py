"""`hub.preferences`: the preferences store, telling every process when a user's preferences change.

Reads go straight to the store. After each write, `notify(user_id)` runs (the hub publishes a control message
on the bus, so open streams of that user on any process reload their mutes), and a change of the whole
document (PUT, PATCH: what can change quiet hours) makes the user's held pushes due now (`HeldStore.wake`),
so the worker decides again under the new hours or zone — releasing, or deferring with the count kept.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from ..errors import database_errors
from .held import HeldStore
from .preferences import Preferences, ScopePrefs
from .preferences_store import PreferencesStore

log = logging.getLogger("tidings.policy")

Notify = Callable[[str], Awaitable[None]]


class LivePreferences:
    """The store's interface; database outages raise StoreUnavailable (503), bad input InvalidPreferences."""

    def __init__(self, store: PreferencesStore, held: HeldStore, notify: Notify) -> None:
        self.store = store
        self._held = held
        self._notify = notify

    async def get(self, user_id: str) -> Preferences | None:
        with database_errors():
            return await self.store.get(user_id)

    async def get_many(self, user_ids: Iterable[str]) -> dict[str, Preferences]:
        with database_errors():
            return await self.store.get_many(user_ids)

    async def put(self, user_id: str, prefs: Preferences) -> Preferences:
        with database_errors():
            stored = await self.store.put(user_id, prefs)
        await self._changed(user_id, hours=True)
        return stored

    async def patch(self, user_id: str, patch: Mapping[str, Any]) -> Preferences:
        with database_errors():
            stored = await self.store.patch(user_id, patch)
        await self._changed(user_id, hours=True)
        return stored

    async def put_scope(self, user_id: str, scope: str, prefs: ScopePrefs) -> Preferences:
        with database_errors():
            stored = await self.store.put_scope(user_id, scope, prefs)
        await self._changed(user_id)
        return stored

    async def delete_scope(self, user_id: str, scope: str) -> bool:
        with database_errors():
            existed = await self.store.delete_scope(user_id, scope)
        if existed:
            await self._changed(user_id)
        return existed

    async def delete(self, user_id: str) -> bool:
        with database_errors():
            existed = await self.store.delete(user_id)
        if existed:
            await self._changed(user_id, hours=True)
        return existed

    async def _changed(self, user_id: str, *, hours: bool = False) -> None:
        if hours:
            with database_errors():
                woken = await self._held.wake(user_id)
            if woken:
                log.info("preferences of %s changed: %d held push(es) to decide again", user_id, woken)
        await self._notify(user_id)
