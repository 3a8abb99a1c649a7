"""The hub's delivery-policy parts (and its inbox), built at start from the runtime and stopped with the hub.

- presence: this process's streams count cluster-wide (the router reports opens and closes);
- the router's mute filter (`streams/mutes.py`), fed by the preferences store and told of changes by the
  bus's control message `tidings.preferences`;
- `hub.preferences` (`policy/live.py`): writes publish that control message;
- the stream debounce (`streams/debounce.py`) and its flusher, which runs in every serving process;
- `hub.inbox` (hub_inbox.py): its counts depend on the mutes, and it hears of inbox changes on the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import wire
from .errors import BusUnavailable
from .hub_inbox import HubInbox, preference_channels
from .policy.live import LivePreferences
from .streams.debounce import StreamDebounce
from .streams.mutes import StreamPolicy

if TYPE_CHECKING:
    from .hub import Hub
    from .policy.presence import Presence
    from .runtime import Runtime

log = logging.getLogger("tidings.hub")


@dataclass
class HubPolicy:
    preferences: LivePreferences
    debounce: StreamDebounce
    inbox: HubInbox
    _joining: asyncio.Task[None] | None = field(default=None, repr=False)

    @classmethod
    async def start(cls, hub: Hub, runtime: Runtime) -> HubPolicy:
        presence = runtime.presence
        streams = StreamPolicy(
            clock=hub.clock,
            presence=presence,
            load=runtime.preferences.get_many,
            hold_limit=hub.settings.stream_buffer_events,
        )
        hub.streams.policy = streams
        joining = None
        try:
            await presence.start()
        except BusUnavailable as exc:  # like the bus: start anyway, keep trying in the background
            log.warning("presence: %s; retrying in the background", exc)
            joining = asyncio.create_task(_join_eventually(presence), name="tidings-presence-join")
        await streams.start()
        inbox = HubInbox(hub, runtime.inbox, runtime.preferences.get)

        async def changed(user_id: str) -> None:
            inbox.cache.changed(preference_channels(user_id))  # here at once; elsewhere when the bus says
            await hub.bus.publish([wire.control_message("preferences", {"user_id": user_id})])

        debounce = StreamDebounce(
            runtime.debounce_store("stream"),
            defaults=hub.debounce_defaults,
            publish=hub.bus.publish,
            clock=hub.clock,
            poll_seconds=hub.settings.debounce_poll_seconds,
        )
        await debounce.start()
        inbox.start()
        return cls(LivePreferences(runtime.preferences, runtime.held, changed), debounce, inbox, joining)

    def on_control(self, hub: Hub, envelope: wire.Envelope) -> None:
        """A control message about preferences, inboxes or a gap (the hub resets streams and revokes)."""
        if envelope.type == wire.GAP:
            self.inbox.on_gap()
        elif envelope.type == "tidings.preferences":
            user_id = str(envelope.body["user_id"])
            if hub.streams.policy is not None:
                hub.streams.policy.invalidate(user_id)
            self.inbox.on_preferences(user_id)
        elif envelope.type == "tidings.inbox":
            self.inbox.on_announcement(envelope.body)

    async def stop(self, hub: Hub) -> None:
        await self.inbox.stop()
        if self._joining is not None:
            self._joining.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._joining
        await self.debounce.stop()
        if hub.streams.policy is not None:
            await hub.streams.policy.stop()
            hub.streams.policy = None  # presence itself is withdrawn by the runtime when it closes


async def _join_eventually(presence: Presence) -> None:
    delay = 0.5
    while True:
        await asyncio.sleep(delay)
        try:
            await presence.start()
        except BusUnavailable:
            delay = min(delay * 2, 10.0)
            continue
        log.info("presence: joined the cluster")
        return
