"""Helpers for stream-policy tests at the hub level: a stream is a Connection registered with the router,
read through its own buffer (`next_chunk`), without sockets."""

from __future__ import annotations

import asyncio

from support import Frame, parse_frames
from tidings import Hub
from tidings.auth import Principal
from tidings.streams.connection import Connection


class Reader:
    """Reads event frames from a connection's buffer, in order."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._frames: list[Frame] = []

    async def next(self, timeout: float = 5.0) -> Frame:
        async with asyncio.timeout(timeout):
            while not self._frames:
                chunk = await self.conn.next_chunk()
                assert chunk is not None, "the stream closed"
                self._frames += [f for f in parse_frames(chunk.decode()) if f.event != "message" or f.data]
        return self._frames.pop(0)

    async def until(self, event_type: str, timeout: float = 5.0) -> list[Frame]:
        """Every frame up to and including the first of `event_type` (a marker: "nothing else came first")."""
        seen = []
        while True:
            frame = await self.next(timeout)
            seen.append(frame)
            if frame.event == event_type:
                return seen


async def stream_of(hub: Hub, user: str, last_event_id: str | None = None) -> Reader:
    conn = hub.open_stream(
        Principal(user), [], endpoint="events", limit=0, ip="", replaying=last_event_id is not None
    )
    if last_event_id is not None:
        await hub.resume(conn, last_event_id)
    assert hub.streams.policy is not None
    await hub.streams.policy.ready(conn)
    return Reader(conn)


async def marker(hub: Hub, user: str) -> str:
    return await hub.publish("test.marker", {}, to={"users": [user]})


async def wait_muted(hub: Hub, user: str, expected: frozenset[str]) -> None:
    policy = hub.streams.policy
    assert policy is not None
    async with asyncio.timeout(5):
        while policy.muted(user) != expected:
            await asyncio.sleep(0.01)
