"""The Hub: the core of tidings — publish, streams, revocation, lifecycle. No web framework in here.

    hub = Hub(settings)
    async with hub.lifespan():
        await hub.publish("order.created", {"order_id": 7}, to={"roles": ["admin"]})

The HTTP layer (`tidings.api`) puts routes in front of it (`tidings.api.mount(app, hub)`); `tidings serve`
(`tidings.server`) runs it standalone. Errors raised here are ours (`AuthError`, `InvalidEvent`,
`BusUnavailable`, ...); `api/errors.py` maps them to HTTP answers in one place.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from . import metrics, wire
from .auth import Principal, TokenVerifier, TopicAccessRule, allow_any_topic, topic_granted
from .bus import Bus, create_bus
from .clock import Clock, system_clock
from .config import Settings, load_settings
from .devmode import ensure_dev_secrets
from .errors import (
    AuthError,
    BusUnavailable,
    ConfigError,
    InvalidEvent,
    NotStarted,
    PushNotQueued,
    validation_details,
)
from .events import Audience, EventIn, Limits
from .hub_policy import HubPolicy
from .policy.windows import parse_defaults
from .push.payloads import ensure_push_fits
from .runtime import Runtime
from .streams.connection import BufferLimits, Connection
from .streams.recover import GapRecovery
from .streams.resume import replay
from .streams.router import Router

if TYPE_CHECKING:
    from .delivery.log import DeliveryLog
    from .delivery.queue import Queue
    from .hub_inbox import HubInbox
    from .otel import OtlpBridge
    from .policy.live import LivePreferences
    from .policy.presence import Presence
    from .push.base import Provider
    from .registry.store import DeviceStore

log = logging.getLogger("tidings.hub")


class Hub:
    """One per process. Safe to construct at import time: nothing connects, and no file is written, before
    `start()` (or the `lifespan()` context) runs. Every backend-like collaborator can be injected."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        bus: Bus | None = None,
        queue: Queue | None = None,
        devices: DeviceStore | None = None,
        providers: Mapping[str, Provider] | None = None,
        topic_access: TopicAccessRule | None = None,
        clock: Clock = system_clock,
        debounce: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        s = self.settings
        self.clock = clock
        try:  # per event type: {"tasks.changed": {"stream": 1, "push": 60}}, over TIDINGS_DEBOUNCE
            self.debounce_defaults = {**s.debounce, **parse_defaults(debounce)}
        except ValidationError as exc:
            raise ConfigError(f"Hub(debounce=...): {exc}") from exc
        self.bus = bus or create_bus(
            s.bus_url,
            prefix=s.redis_prefix,
            max_events=s.history_max_events,
            max_age=s.history_max_age_seconds,
            clock=clock,
        )
        self.streams = Router(
            keepalive=s.keepalive_seconds,
            idle_timeout=s.stream_idle_timeout,
            clock=clock,
            expire_history=self.bus.expire_history,
            max_buffered_bytes=s.effective_stream_buffer_total_bytes,
        )
        self._gaps = GapRecovery(self.streams, self.bus, clock)
        self.limits = Limits(
            max_data_bytes=s.max_data_bytes, max_audience=s.max_audience, push_fits=ensure_push_fits
        )
        self.publish_body_limit = s.max_batch * (s.max_data_bytes + 16_384)
        self.stream_headers = wire.stream_headers(s.reconnect_delay_ms)
        self.stream_preamble = wire.preamble(s.reconnect_delay_ms)
        self.draining = False
        self.runtime: Runtime | None = None
        self._verifier: TokenVerifier | None = None
        self._queue, self._devices, self._providers = queue, devices, providers
        # who may read a topic: the rule given, else the token's topics claim (or anyone, if topics are open)
        self._topic_access = topic_access or (allow_any_topic if s.topics_open else topic_granted)
        self._buffer_limits = BufferLimits(
            s.stream_buffer_bytes, s.stream_buffer_events, self.streams.budget, s.stream_send_buffer_bytes
        )
        self._otel: OtlpBridge | None = None
        self._policy: HubPolicy | None = None

    # --- lifecycle -----------------------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[Hub]:
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    async def start(self) -> None:
        self.settings = ensure_dev_secrets(self.settings)  # development only: generated once, in the data dir
        self._verifier = TokenVerifier(self.settings, clock=self.clock)
        await self.bus.start(self._on_message)
        self.streams.start()
        self.runtime = await Runtime.open(
            self.settings,
            clock=self.clock,
            queue=self._queue,
            devices=self._devices,
            providers=self._providers,
        )
        await self._start_policy(self.runtime)
        if self.settings.effective_worker_in_process:
            self.runtime.start_background()
        if self.settings.otel_endpoint:
            from .otel import start_otlp_export

            self._otel = start_otlp_export()
        log.info("hub started", extra={"bus": self.settings.bus_url.split("@")[-1], "env": self.settings.env})

    async def stop(self) -> None:
        await self.drain(grace=0)
        await self._gaps.stop()
        await self.streams.stop()
        await self._stop_policy()
        await self.bus.stop()
        if self.runtime is not None:
            await self.runtime.close()
            self.runtime = None
        if self._otel is not None:
            await asyncio.to_thread(self._otel.shutdown)
            self._otel = None

    async def drain(self, grace: float | None = None) -> None:
        """Stop taking streams; tell open ones to reconnect elsewhere (spread by jitter); wait for them to end."""
        self.draining = True
        base = self.settings.reconnect_delay_ms
        for conn in list(self.streams.connections()):
            conn.send_comment(wire.shutdown_frame(int(base * (0.5 + random.random()))))
            conn.close("shutdown")
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        with suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self.streams.wait_empty()

    def _started(self) -> Runtime:
        if self.runtime is None:
            raise NotStarted(
                "the hub is not started: run it inside its lifespan (`async with hub.lifespan()`)"
            )
        return self.runtime

    @property
    def devices(self) -> DeviceStore:
        return self._started().devices

    @property
    def deliveries(self) -> DeliveryLog:
        return self._started().deliveries

    @property
    def queue(self) -> Queue:
        return self._started().queue

    @property
    def presence(self) -> Presence:
        """Who is online on any process: `await hub.presence.status(user)`, `.online_many(users)`."""
        return self._started().presence

    @property
    def preferences(self) -> LivePreferences:
        """Users' delivery preferences; a write reaches every process's open streams at once."""
        self._started()
        assert self._policy is not None
        return self._policy.preferences

    @property
    def inbox(self) -> HubInbox:
        """Users' notification inboxes: list, counts, mark; changes reach their streams on every process."""
        self._started()
        assert self._policy is not None
        return self._policy.inbox

    @property
    def verifier(self) -> TokenVerifier:
        if self._verifier is None:
            raise NotStarted("the hub is not started: its token verifier is built at start")
        return self._verifier

    # --- publishing ----------------------------------------------------------------------------------------

    async def publish(
        self,
        type: str,
        data: Mapping[str, Any] | None = None,
        *,
        to: Audience | Mapping[str, Any],
        occurred_at: datetime | None = None,
        push: Any = None,
        scope: str | None = None,
        critical: bool = False,
        debounce: Any = None,
        inbox: Any = None,
    ) -> str:
        """Publish one event; returns its id (a debounced one's too: see streams/debounce.py). InvalidEvent
        names the bad field."""
        event = {"type": type, "data": dict(data or {}), "to": to, "occurred_at": occurred_at, "push": push}
        policy = {"scope": scope, "critical": critical or None, "debounce": debounce, "inbox": inbox}
        event.update((k, v) for k, v in policy.items() if v is not None)  # unset: as if not given
        return (await self.publish_many([event]))[0]

    async def publish_many(self, events: Sequence[EventIn | Mapping[str, Any]]) -> list[str]:
        return await self.publish_events(self.validate_events(events, indexed=len(events) > 1))

    def validate_events(self, items: Sequence[Any], *, indexed: bool) -> list[EventIn]:
        """Validate events (dicts, or EventIn built elsewhere); InvalidEvent naming every bad field (`[3].to`)."""
        events, details = [], []
        context = {"limits": self.limits}
        for index, item in enumerate(items):
            prefix = f"[{index}]." if indexed else ""
            try:
                if isinstance(item, EventIn):
                    item = item.model_dump(exclude_unset=True)  # re-checked against this hub's limits
                events.append(EventIn.model_validate(item, context=context))
            except ValidationError as exc:
                details += validation_details(exc.errors(), prefix=prefix)
        if details:
            raise InvalidEvent(details)
        return events

    async def publish_events(self, events: Sequence[EventIn]) -> list[str]:
        """Assign ids, send validated events, keep those asking for it in inboxes. Bus/StoreUnavailable: nothing
        was sent; PushNotQueued / InboxNotStored: the streams got them, their pushes / inbox items were not kept."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        send = functools.partial(self._send, events, now)
        inbox = self.inbox if any(e.inbox for e in events) else None  # NotStarted rather than not kept
        ids, unkept = await inbox.publish(events, send) if inbox is not None else (await send(), None)
        logging_publishes = log.isEnabledFor(logging.INFO)  # the extra dict per event costs even when dropped
        for event, event_id in zip(events, ids, strict=True):
            metrics.events_published_total.labels(event.type).inc()
            if logging_publishes:
                extra = {"event_id": event_id, "event_type": event.type, "audience": event.to.size()}
                log.info("publish", extra=extra)
        if self.runtime is not None:
            try:
                await self.runtime.enqueue_pushes(events, ids)
            except BusUnavailable as exc:
                log.error("push jobs not queued", extra={"event_ids": ids, "reason": str(exc)})
                raise PushNotQueued(ids) from exc
        if unkept is not None:  # raised after the pushes were queued: they were the publisher's to send
            raise unkept
        return ids

    async def _send(self, events: Sequence[EventIn], now: datetime) -> list[str]:
        debounce = self._policy.debounce if self._policy is not None else None
        if debounce is not None and debounce.applies(events):  # windows first (see streams/debounce.py)
            return await debounce.publish(events, now)
        tails = [wire.encode_tail(e.type, e.to.channels(), e.public(now), scope=e.scope, critical=e.critical)
                 for e in events]  # fmt: skip
        return await self.bus.publish(tails)

    # --- streams -------------------------------------------------------------------------------------------

    async def authenticate(self, token: str | None, *, valid_for: float = 0.0) -> Principal:
        """The user behind a JWT; AuthError if missing, invalid, revoked, or valid for less than `valid_for` more
        seconds (a stream asks for a few, so a client refreshes its token instead of looping on closed streams);
        BusUnavailable if we cannot tell whether it was revoked."""
        if not token:
            raise AuthError("a bearer token is required", "unauthorized")
        principal = await self.verifier.verify(token)
        expires_at = principal.expires_at
        if valid_for and expires_at is not None and expires_at - self.clock() < valid_for:
            raise AuthError(f"token expires in less than {valid_for:g} s: refresh it", "token_expired")
        if await self.bus.is_token_revoked(principal.user_id, principal.jti, principal.issued_at):
            raise AuthError("this session was revoked", "token_revoked")
        return principal

    async def may_read_topic(self, principal: Principal, topic: str) -> bool:
        """Whether `principal` may read `topic` (on a stream, or as a device's push subscription)."""
        allowed = self._topic_access(principal, topic)
        return bool(await allowed) if asyncio.iscoroutine(allowed) else bool(allowed)

    def open_stream(
        self,
        principal: Principal,
        topics: Sequence[str],
        *,
        endpoint: str,
        limit: int,
        ip: str,
        replaying: bool,
    ) -> Connection:
        """Register a new stream with the router (its events start queueing at once)."""
        roles = (f"r:{r}" for r in principal.roles)
        channels = [wire.BROADCAST, f"u:{principal.user_id}", *roles, *(f"t:{t}" for t in topics)]
        lifetime = self.settings.stream_max_lifetime
        deadline = self.clock() + lifetime * (0.9 + 0.2 * random.random()) if lifetime else None  # no herd
        conn = Connection(principal, channels, endpoint=endpoint, limits=self._buffer_limits, clock=self.clock,
                          deadline=deadline, ip=ip, replaying=replaying)  # fmt: skip
        self.streams.add(conn, limit=limit)
        return conn

    async def resume(self, conn: Connection, last_event_id: str) -> None:
        """Queue what `conn` missed since `last_event_id` (without muted scopes), or `event: reset` when the
        history cannot say."""
        policy = self.streams.policy
        if policy is not None:
            await policy.ready(conn)  # live events are held meanwhile, then filtered the same way
            await replay(conn, self.bus, last_event_id, self.clock, lambda e: policy.allows(conn, e))
            return
        await replay(conn, self.bus, last_event_id, self.clock)

    # --- sessions ------------------------------------------------------------------------------------------

    async def revoke(self, user_id: str, *, jti: str | None = None) -> None:
        """Close the user's streams (or one session's) on every process. From now on the jti is refused, or,
        without one, every token of the user issued until now (by `iat`; a token without `iat` as well)."""
        now = self.clock()
        # no token still accepted outlives this: longer-lived ones are refused at verification
        until = now + self.settings.jwt_max_lifetime_seconds + self.settings.jwt_leeway_seconds
        if jti is not None:
            await self.bus.mark_revoked(jti, until)
        else:
            await self.bus.mark_user_revoked(user_id, now, until)
        await self.bus.publish([wire.control_message("revoke", {"user_id": user_id, "jti": jti})])

    def _on_message(self, message: bytes) -> None:
        envelope = wire.Envelope.parse(message, self.clock)
        if envelope.channels[0] == wire.CONTROL:
            self._on_control(envelope)
        else:
            self.streams.route(envelope)

    def _on_control(self, envelope: wire.Envelope) -> None:
        if self._policy is not None:  # preferences and inbox changes (a gap empties the inbox's counts cache)
            self._policy.on_control(self, envelope)
        if envelope.type == wire.GAP:
            # the bus lost events it could not catch up on: no stream may go on as if nothing happened
            self._gaps.on_gap(envelope.body)
        elif envelope.type == "tidings.revoke":
            body = envelope.body
            user_id, jti = body["user_id"], body.get("jti")
            self.streams.close_where(
                lambda c: c.principal.user_id == user_id and (jti is None or c.principal.jti == jti),
                "revoked",
            )

    # --- delivery policy -----------------------------------------------------------------------------------

    async def _start_policy(self, runtime: Runtime) -> None:
        runtime.debounce_defaults = self.debounce_defaults
        self._policy = await HubPolicy.start(self, runtime)

    async def _stop_policy(self) -> None:
        policy, self._policy = self._policy, None
        if policy is not None:
            await policy.stop(self)

    # --- health --------------------------------------------------------------------------------------------

    async def readiness(self) -> dict[str, bool]:
        checks = {"bus": await self.bus.healthy()}
        if self.runtime is not None:
            checks.update(await self.runtime.readiness())
        return checks
