"""The badge of a push with `badge: "unread"`: each device's user's unread count at send time.

A device reads its user's inbox with the roles and topics it was registered with (the same channels that make
it reachable by role and topic pushes), and the user's mutes apply as on every count. The worker asks once per
job for all its devices: one query for their channels, one for their users' preferences, then one count per
distinct reader (a few at a time), so devices of one user, or of users reading alike, cost one count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Protocol

from tidings.inbox.errors import InvalidInboxInput
from tidings.inbox.models import Reader
from tidings.inbox.store import InboxStore
from tidings.policy.decide import inbox_muted_scopes
from tidings.policy.preferences import Preferences

__all__ = ["UnreadBadges"]

CONCURRENCY = 4


class _Device(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def user_id(self) -> str: ...


Channels = Callable[[Sequence[str]], Awaitable[Mapping[str, Sequence[str]]]]
PreferencesOf = Callable[[Iterable[str]], Awaitable[Mapping[str, Preferences]]]


class UnreadBadges:
    """`await badges(devices)` → {device id: unread count} (devices whose reader is invalid are left out)."""

    def __init__(
        self, store: InboxStore, *, channels: Channels, preferences: PreferencesOf, clock: Callable[[], float]
    ) -> None:
        self._store = store
        self._channels = channels
        self._preferences = preferences
        self._clock = clock

    async def __call__(self, devices: Sequence[_Device]) -> dict[str, int]:
        names = await self._channels([d.id for d in devices])
        readers: dict[str, Reader] = {}
        for device in devices:
            reader = _reader(device.user_id, names.get(device.id, ()))
            if reader is not None:
                readers[device.id] = reader
        prefs = await self._preferences({r.user_id for r in readers.values()})
        now = self._clock()
        limit = asyncio.Semaphore(CONCURRENCY)

        async def count(reader: Reader) -> tuple[Reader, int]:
            muted, _ = inbox_muted_scopes(prefs.get(reader.user_id), now)
            async with limit:
                return reader, (await self._store.counts(reader, exclude_scopes=muted)).unread

        unread = dict(await asyncio.gather(*(count(r) for r in set(readers.values()))))
        return {device_id: unread[reader] for device_id, reader in readers.items()}


def _reader(user_id: str, channels: Iterable[str]) -> Reader | None:
    roles = frozenset(c.removeprefix("role:") for c in channels if c.startswith("role:"))
    topics = frozenset(c.removeprefix("topic:") for c in channels if c.startswith("topic:"))
    try:
        return Reader(user_id, roles, topics)
    except InvalidInboxInput:
        return None
