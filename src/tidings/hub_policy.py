"""The hub's delivery-policy parts, built at start from the runtime and stopped with the hub.

- presence: this process's streams count cluster-wide (the router reports opens and closes);
- the router's mute filter (`streams/mutes.py`), fed by the preferences store and told of changes by the
  bus's control message `tidings.preferences`;
- `hub.preferences` (`policy/live.py`): writes publish that control message;
- the stream debounce (`streams/debounce.py`) and its flusher, which runs in every serving process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import wire
from .policy.live import LivePreferences
from .streams.debounce import StreamDebounce
from .streams.mutes import StreamPolicy

if TYPE_CHECKING:
    from .hub import Hub
    from .runtime import Runtime


@dataclass
class HubPolicy:
    preferences: LivePreferences
    debounce: StreamDebounce

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
        await presence.start()
        await streams.start()

        async def changed(user_id: str) -> None:
            await hub.bus.publish([wire.control_message("preferences", {"user_id": user_id})])

        debounce = StreamDebounce(
            runtime.debounce_store("stream"),
            defaults=hub.debounce_defaults,
            publish=hub.bus.publish,
            clock=hub.clock,
            poll_seconds=hub.settings.debounce_poll_seconds,
        )
        await debounce.start()
        return cls(LivePreferences(runtime.preferences, runtime.held, changed), debounce)

    async def stop(self, hub: Hub) -> None:
        await self.debounce.stop()
        if hub.streams.policy is not None:
            await hub.streams.policy.stop()
            hub.streams.policy = None  # presence itself is withdrawn by the runtime when it closes
