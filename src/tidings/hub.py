"""The Hub: `publish()`, the router a host app mounts, and the lifespan that wires bus, streams and storage.

hub = Hub(settings)
app.include_router(hub.router)          # or hub.mount(app)
await hub.publish("order.created", {"order_id": 7}, to={"roles": ["admin"]})
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError
from starlette.requests import Request

from . import metrics
from .auth import Principal, TokenVerifier, TopicAccessRule, allow_any_topic, bearer_token
from .bus import Bus, create_bus
from .config import Settings, load_settings
from .devmode import ensure_dev_secrets
from .errors import ApiError, AuthError, BusUnavailable
from .events import Audience, Envelope, EventIn, Limits, encode_message_tail, sse_frame
from .lifecycle import install_drain_on_signals
from .streams.connection import BufferLimits, Connection
from .streams.router import Router

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI
    from starlette.types import ASGIApp

    from .delivery.log import DeliveryLog
    from .delivery.queue import Queue
    from .otel import OtlpBridge
    from .registry.store import DeviceStore
    from .services import Services
    from .streams.sse import StreamEndpoint

log = logging.getLogger("tidings.hub")

CONTROL = "#ctl"  # the bus channel of control messages (revocations); no stream subscribes to it
REVOKED_JTI_TTL = 86_400.0  # a revoked session id is refused this long (tokens rarely live longer)


class Hub:
    """One per process. Safe to construct at import time; nothing connects before the lifespan starts."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        bus: Bus | None = None,
        topic_access: TopicAccessRule = allow_any_topic,
        clock: Callable[[], float] = time.time,
        handle_signals: bool = True,
    ) -> None:
        self.settings = ensure_dev_secrets(settings or load_settings())
        s = self.settings
        self.clock = clock
        self.verifier = TokenVerifier(s)
        self.bus = bus or create_bus(
            s.bus_url,
            prefix=s.redis_prefix,
            max_events=s.history_max_events,
            max_age=s.history_max_age_seconds,
        )
        self.streams = Router(keepalive=s.keepalive_seconds, idle_timeout=s.stream_idle_timeout, clock=clock)
        self.limits = Limits(max_data_bytes=s.max_data_bytes, max_audience=s.max_audience)
        self.publish_body_limit = s.max_batch * (s.max_data_bytes + 16_384)
        self.stream_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            (b"x-reconnect-delay", str(s.reconnect_delay_ms).encode()),
        ]
        self.stream_preamble = b"retry: %d\n:ok\n\n" % s.reconnect_delay_ms
        self.draining = False
        self.services: Services | None = None
        self._topic_access = topic_access
        self._handle_signals = handle_signals
        self._buffer_limits = BufferLimits(s.stream_buffer_bytes, s.stream_buffer_events)
        self._router: APIRouter | None = None
        self._otel: OtlpBridge | None = None
        self._stream_endpoints: dict[str, StreamEndpoint] | None = None

    # --- lifespan ------------------------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        if app is not None:
            app.state.tidings_hub = self
        await self.start()
        restore = install_drain_on_signals(self) if self._handle_signals else None
        try:
            yield
        finally:
            if restore is not None:
                restore()
            await self.stop()

    async def start(self) -> None:
        from .services import Services

        await self.bus.start(self._on_message)
        self.streams.start()
        self.services = await Services.start(self.settings, clock=self.clock)
        if self.settings.otel_endpoint:
            from .otel import start_otlp_export

            self._otel = start_otlp_export()
        log.info(
            "hub started", extra={"bus": self.settings.bus_url.split("@")[-1], "env": self.settings.env.value}
        )

    async def stop(self) -> None:
        await self.drain(grace=0)
        await self.streams.stop()
        await self.bus.stop()
        if self.services is not None:
            await self.services.stop()
            self.services = None
        if self._otel is not None:
            await asyncio.to_thread(self._otel.shutdown)
            self._otel = None

    async def drain(self, grace: float | None = None) -> None:
        """Stop taking streams; tell open ones to reconnect elsewhere (spread by jitter); wait for them to end."""
        self.draining = True
        base = self.settings.reconnect_delay_ms
        for conn in list(self.streams.connections()):
            retry = int(base * (0.5 + random.random()))
            conn.send_comment(sse_frame('{"reason":"server_shutdown"}', event="shutdown", retry=retry))
            conn.close("shutdown")
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        with suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self.streams.wait_empty()

    @property
    def devices(self) -> DeviceStore:
        return self._started().devices

    @property
    def deliveries(self) -> DeliveryLog:
        return self._started().deliveries

    @property
    def queue(self) -> Queue:
        return self._started().queue

    def _started(self) -> Services:
        if self.services is None:
            raise RuntimeError(
                "the hub is not started: run it inside its lifespan (hub.router / hub.lifespan)"
            )
        return self.services

    # --- the HTTP surface ----------------------------------------------------------------------------------

    @property
    def router(self) -> APIRouter:
        """Every tidings route, with this hub's lifespan: `app.include_router(hub.router)`."""
        if self._router is None:
            from .api.assemble import build_router

            self._router = build_router(self)
        return self._router

    @property
    def stream_endpoints(self) -> dict[str, StreamEndpoint]:
        """The SSE endpoints by path (one instance each, shared by the router and the fast path)."""
        if self._stream_endpoints is None:
            from .api.assemble import stream_endpoints

            self._stream_endpoints = stream_endpoints(self)
        return self._stream_endpoints

    def fast_streams(self, app: ASGIApp) -> ASGIApp:
        """Wrap an ASGI app so the stream paths bypass its middleware (recommended at thousands of streams)."""
        from .api.assemble import StreamFastPath

        return StreamFastPath(app, self.stream_endpoints)

    def mount(self, app: FastAPI) -> None:
        """Include the router and register tidings' JSON error handlers on the app."""
        from .api.assemble import install_error_handlers

        install_error_handlers(app)
        app.include_router(self.router)

    # --- publishing ----------------------------------------------------------------------------------------

    async def publish(
        self,
        type: str,
        data: Mapping[str, Any] | None = None,
        *,
        to: Audience | Mapping[str, Any],
        occurred_at: datetime | None = None,
        push: Any = None,
    ) -> str:
        """Publish one event; returns its id. Raises pydantic's ValidationError for bad input."""
        event = {"type": type, "data": dict(data or {}), "to": to, "occurred_at": occurred_at, "push": push}
        return (await self.publish_many([event]))[0]

    async def publish_many(self, events: Sequence[EventIn | Mapping[str, Any]]) -> list[str]:
        validated = [
            e if isinstance(e, EventIn) else EventIn.model_validate(e, context={"limits": self.limits})
            for e in events
        ]
        return await self.publish_events(validated)

    def validate_events(self, items: Sequence[Any], *, indexed: bool) -> list[EventIn]:
        """Validate a publish request's events; ApiError 422 naming the first bad field (`[3].to.users`)."""
        from .api.routing import validation_errors

        events, details = [], []
        for index, item in enumerate(items):
            try:
                events.append(EventIn.model_validate(item, context={"limits": self.limits}))
            except ValidationError as exc:
                details += validation_errors(exc.errors(), prefix=f"[{index}]." if indexed else "")
        if details:
            first = details[0]
            message = f"{first['field']}: {first['message']}"
            raise ApiError(422, "validation_error", message, first["field"], errors=details)
        return events

    async def publish_events(self, events: Sequence[EventIn]) -> list[str]:
        """Assign ids and send validated events; 503 (ApiError) if the bus cannot take them."""
        now = datetime.now(UTC)
        try:
            ids = await self.bus.publish([encode_message_tail(e, now) for e in events])
        except BusUnavailable as exc:
            raise ApiError(
                503, "unavailable", "the event bus is unavailable; retry", headers={"Retry-After": "1"}
            ) from exc
        logging_publishes = log.isEnabledFor(logging.INFO)  # the extra dict per event costs even when dropped
        for event, event_id in zip(events, ids, strict=True):
            metrics.events_published_total.labels(event.type).inc()
            if logging_publishes:
                extra = {"event_id": event_id, "event_type": event.type, "audience": _audience_size(event.to)}
                log.info("publish", extra=extra)
        if self.services is not None:
            try:
                await self.services.enqueue_pushes(events, ids)
            except BusUnavailable as exc:
                # The streams have the events already; say exactly what happened rather than invite a blind retry.
                log.error("push jobs not queued", extra={"event_ids": ids, "reason": str(exc)})
                raise ApiError(
                    503,
                    "push_unavailable",
                    f"events {', '.join(ids)} reached the streams, but their push jobs could not be queued",
                    headers={"Retry-After": "1"},
                ) from exc
        return ids

    # --- streams -------------------------------------------------------------------------------------------

    async def authenticate(self, request: Request) -> Principal:
        """The user behind a request's JWT (header, ?token= or cookie), or ApiError 401."""
        token = (
            bearer_token(request.headers.get("authorization"))
            or request.query_params.get("token")
            or (request.cookies.get(self.settings.token_cookie) if self.settings.token_cookie else None)
        )
        if not token:
            raise ApiError(
                401, "unauthorized", "a bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )
        try:
            principal = await self.verifier.verify(token)
        except AuthError as exc:
            raise ApiError(401, exc.code, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc
        try:
            revoked = principal.jti is not None and await self.is_revoked(principal.jti)
        except BusUnavailable as exc:
            raise ApiError(
                503, "unavailable", "cannot check the session now; retry", headers={"Retry-After": "1"}
            ) from exc
        if revoked:
            raise ApiError(
                401, "token_revoked", "this session was revoked", headers={"WWW-Authenticate": "Bearer"}
            )
        return principal

    async def may_read_topic(self, principal: Principal, topic: str) -> bool:
        allowed = self._topic_access(principal, topic)
        return bool(await allowed) if asyncio.iscoroutine(allowed) else bool(allowed)

    def open_connection(
        self,
        principal: Principal,
        topics: Sequence[str],
        *,
        endpoint: str,
        limit: int,
        ip: str,
        replaying: bool,
    ) -> Connection:
        channels = [
            "*",
            f"u:{principal.user_id}",
            *(f"r:{r}" for r in principal.roles),
            *(f"t:{t}" for t in topics),
        ]
        now = self.clock()
        lifetime = self.settings.stream_max_lifetime
        deadline = now + lifetime * (0.9 + 0.2 * random.random()) if lifetime else None  # jitter: no herd
        conn = Connection(
            principal,
            channels,
            endpoint=endpoint,
            limits=self._buffer_limits,
            now=now,
            deadline=deadline,
            ip=ip,
            replaying=replaying,
        )
        self.streams.add(conn, limit=limit)
        return conn

    # --- sessions ------------------------------------------------------------------------------------------

    async def revoke(self, user_id: str, *, jti: str | None = None) -> None:
        """Close the user's streams (or one session's) on every process; refuse a revoked jti from now on."""
        payload = orjson.dumps({"user_id": user_id, "jti": jti})
        if jti is not None:
            await self.bus.mark_revoked(jti, self.clock() + REVOKED_JTI_TTL)
        await self.bus.publish([b"tidings.revoke\n%s\n%s" % (CONTROL.encode(), payload)])

    async def is_revoked(self, jti: str) -> bool:
        return await self.bus.is_revoked(jti)

    def _on_message(self, message: bytes) -> None:
        envelope = Envelope.parse(message)
        if envelope.channels[0] == CONTROL:
            self._on_control(envelope)
        else:
            self.streams.route(envelope)

    def _on_control(self, envelope: Envelope) -> None:
        if envelope.type == "tidings.revoke":
            body = orjson.loads(envelope.message.split(b"\n", 3)[3])
            user_id, jti = body["user_id"], body.get("jti")
            self.streams.close_where(
                lambda c: c.principal.user_id == user_id and (jti is None or c.principal.jti == jti),
                "revoked",
            )

    # --- health --------------------------------------------------------------------------------------------

    async def readiness(self) -> dict[str, bool]:
        checks = {"bus": await self.bus.healthy()}
        if self.services is not None:
            checks.update(await self.services.readiness())
        return checks


def _audience_size(audience: Audience) -> int | str:
    if audience.broadcast:
        return "broadcast"
    return len(audience.users) + len(audience.roles) + len(audience.topics)
