"""`GET /v1/admin/feed`: the dashboard's one stream — every published event, delivery outcomes, periodic stats.

One tap per process, not per admin: while at least one feed is open, the router hands every routed event to
`AdminFeed.observe`, which builds its summary frame once and queues the same bytes on every feed connection
(through the connections' own bounded buffers: a slow dashboard is cut off like any slow stream). With no feed
open the tap is unregistered and the process pays nothing. A single background task, also only while a feed is
open, sends the stats snapshot every TIDINGS_DASHBOARD_STATS_SECONDS and the push attempts the delivery log gained
since the last look (every process's workers write that log, so this sees them all, policy skips included).

The frames have no `id:` (a monitoring view has no resume: the dashboard reloads the deliveries table when its
feed reconnects) and single-word types, which the hub reserves for its own events. No event payload is sent,
only its size; user ids are cut to the first 20.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import func, select

from ..auth import Principal
from ..errors import TidingsError
from ..registry.tables import deliveries
from ..stats import snapshot
from ..streams.connection import BufferLimits, Connection
from ..wire import Envelope, http_chunk, sse_frame
from .stream import StreamEndpoint

if TYPE_CHECKING:
    from ..hub import Hub

log = logging.getLogger("tidings.dashboard")

FEED_CONNECTIONS_PER_USER = (
    4  # tabs share one per browser (tidings.js shared: true): a few browsers per admin
)
MAX_USERS_SHOWN = 20
DELIVERY_POLL_SECONDS = 1.0
MAX_DELIVERIES_PER_POLL = (
    200  # beyond this per poll the feed skips ahead to the newest (the table has them all)
)


class AdminFeed:
    """The process's feed connections and the tap that feeds them."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._connections: set[Connection] = set()
        self._task: asyncio.Task[None] | None = None
        self._last_delivery_id: int | None = None

    def __len__(self) -> int:
        return len(self._connections)

    def add(self, conn: Connection) -> None:
        if not self._connections:
            self._hub.streams.taps.append(self.observe)
            self._last_delivery_id = None
            self._task = asyncio.create_task(self._tick(), name="tidings-admin-feed")
        self._connections.add(conn)

    def discard(self, conn: Connection) -> None:
        self._connections.discard(conn)
        if not self._connections:
            with suppress(ValueError):
                self._hub.streams.taps.remove(self.observe)
            if self._task is not None:
                self._task.cancel()
                self._task = None

    def send(self, event: str, body: Any) -> None:
        """One frame, encoded once, queued on every feed connection."""
        frame = sse_frame(orjson.dumps(body).decode(), event=event)
        envelope = Envelope("", event, (), frame, http_chunk(frame), b"", self._hub.clock())
        for conn in list(self._connections):
            conn.push(envelope)

    def observe(self, envelope: Envelope, recipients: int) -> None:
        """The router's tap: called once per routed event."""
        try:
            self.send("published", summary(envelope, recipients))
        except Exception:  # a malformed message must not break routing for everyone else
            log.exception("admin feed: cannot summarise event %s", envelope.id)

    async def _tick(self) -> None:
        period = self._hub.settings.dashboard_stats_seconds
        loop = asyncio.get_running_loop()
        next_stats = loop.time()
        while True:
            try:
                await self._send_deliveries()
                if loop.time() >= next_stats:
                    next_stats = loop.time() + period
                    self.send("stats", await snapshot(self._hub))
            except TidingsError as exc:  # a database or broker outage: the next tick tries again
                log.warning("admin feed: %s", exc)
            except Exception:
                log.exception("admin feed tick failed")
            await asyncio.sleep(min(period, DELIVERY_POLL_SECONDS))

    async def _send_deliveries(self) -> None:
        runtime = self._hub.runtime
        if runtime is None:
            return
        async with runtime.engine.connect() as db:
            if self._last_delivery_id is None:  # from now on: history is what GET /v1/admin/deliveries is for
                self._last_delivery_id = (await db.execute(select(func.max(deliveries.c.id)))).scalar() or 0
                return
            stmt = (
                select(deliveries)
                .where(deliveries.c.id > self._last_delivery_id)
                .order_by(deliveries.c.id.desc())
                .limit(MAX_DELIVERIES_PER_POLL)
            )
            rows = (await db.execute(stmt)).mappings().all()
        if not rows:
            return
        self._last_delivery_id = int(rows[0]["id"])
        for row in reversed(rows):
            self.send("delivery", delivery_row(row))


def summary(envelope: Envelope, recipients: int) -> dict[str, Any]:
    """What the feed shows of an event: who it was for and how big, never its data."""
    body = envelope.body
    users = [c[2:] for c in envelope.channels if c.startswith("u:")]
    return {
        "id": envelope.id,
        "type": envelope.type,
        "occurred_at": body.get("occurred_at"),
        "to": {
            "users": users[:MAX_USERS_SHOWN],
            "users_total": len(users),
            "roles": [c[2:] for c in envelope.channels if c.startswith("r:")],
            "topics": [c[2:] for c in envelope.channels if c.startswith("t:")],
            "broadcast": "*" in envelope.channels,
        },
        "push": None,  # the bus carries the event, not its push spec; push attempts follow as `delivery` frames
        "data_bytes": len(orjson.dumps(body.get("data", {}))),
        "recipients": recipients,
    }


def delivery_row(row: Any) -> dict[str, Any]:
    created: datetime = row["created_at"]
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return {
        "event_id": row["event_id"],
        "device_id": row["device_id"],
        "user_id": row["user_id"],
        "provider": row["provider"],
        "outcome": row["outcome"],
        "reason": row["reason"],
        "status": row["status"],
        "attempt": row["attempt"],
        "latency_ms": row["latency_ms"],
        "created_at": created.astimezone(UTC).isoformat(),
    }


class FeedEndpoint(StreamEndpoint):
    """The feed as a stream: the admin streams' auth, wire format, keepalives and shutdown, its own content."""

    def __init__(self, hub: Hub, feed: AdminFeed) -> None:
        super().__init__(hub, name="feed", required_role="admin", limit=FEED_CONNECTIONS_PER_USER)
        self._feed = feed

    def _open(self, principal: Principal, topics: list[str], *, ip: str, replaying: bool) -> Connection:
        hub, s = self._hub, self._hub.settings
        limits = BufferLimits(
            s.stream_buffer_bytes, s.stream_buffer_events, hub.streams.budget, s.stream_send_buffer_bytes
        )
        # no channels: the router routes no event to it; the feed's tap writes to it instead
        conn = Connection(principal, (), endpoint="feed", limits=limits, clock=hub.clock, ip=ip)
        hub.streams.add(conn, limit=FEED_CONNECTIONS_PER_USER)
        self._feed.add(conn)
        return conn

    async def _serve(self, conn: Connection, last_event_id: str | None, *args: Any) -> None:
        try:
            await super()._serve(conn, None, *args)  # no resume: ids are not sent
        finally:
            self._feed.discard(conn)
