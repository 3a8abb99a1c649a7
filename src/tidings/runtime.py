"""The one composition root: everything a process runs beyond streams, built from Settings in one place.

    database engine → device store, delivery log → push queue → providers → worker → periodic pruning
    stream tickets (tickets.py: Redis with a Redis bus, else memory)

The server opens one (embedded mode adds the in-process worker and the pruner), `tidings worker` opens one and
runs the worker in the foreground, and the CLI opens one for its stores. Any part can be handed in instead
(`queue=`, `devices=`, `providers=`): tests and host apps inject their own, and what was injected is not closed.

Delivery policy (built on first use, so a CLI command that needs none connects to nothing more): preferences
and held pushes in the same database, presence and the push debounce windows on the bus's backend (memory in
embedded mode, Redis otherwise; one shared Redis client), the worker's gate, and the worker side's loops (the
push debounce flusher and the quiet-hours release), which run wherever the worker runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from . import db, metrics
from .clock import Clock, system_clock
from .config import DebounceDefault, Settings
from .delivery.coalesce import PolicyLoops
from .delivery.gate import Gate
from .delivery.log import DeliveryLog
from .delivery.queue import PushJob, Queue, create_queue
from .delivery.runner import RunningWorker, worker_from_settings
from .errors import BusUnavailable
from .inbox import InboxStore
from .inbox.badges import UnreadBadges
from .policy import (
    DebounceOptions,
    DebounceStore,
    Presence,
    PresenceOptions,
    create_debounce,
    create_presence,
)
from .policy.held import HeldStore
from .policy.preferences_store import PreferencesStore
from .policy.windows import window_of
from .registry.retire import prune_once
from .registry.store import DeviceStore
from .tickets import TicketStore, create_ticket_store

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncEngine

    from .delivery.worker import Worker
    from .events import EventIn
    from .push.base import Provider

log = logging.getLogger("tidings.runtime")

PRUNE_INTERVAL = 3600.0  # devices past their TTL and delivery rows past retention, hourly
GAUGE_REFRESH = 60.0
CLOSE_GRACE = 10.0  # how long close() waits for a background task to finish what it is doing


class Runtime:
    """Open with `await Runtime.open(settings)`; `await close()` releases what it built (not what was given)."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        engine: AsyncEngine,
        devices: DeviceStore,
        queue: Queue,
        providers: Mapping[str, Provider] | None,
        *,
        owned_engine: bool,
        owned_queue: bool,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.engine = engine
        self.devices = devices
        self.deliveries = DeliveryLog(
            engine, clock=clock, retention_days=settings.delivery_log_retention_days
        )
        self.queue = queue
        self.tickets: TicketStore = create_ticket_store(settings, clock=clock)
        self.worker: RunningWorker | None = None
        self._providers = dict(providers) if providers is not None else None
        self._owned_providers = providers is None
        self._owned_queue = owned_queue
        self._owned_engine = owned_engine
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._gauges_at = float("-inf")
        self.inbox = InboxStore.from_settings(engine, settings, clock=clock)
        self.preferences = PreferencesStore(engine, clock=clock, max_scopes=settings.preferences_max_scopes)
        self.held = HeldStore(engine, clock=clock, lease_seconds=settings.held_claim_lease_seconds)
        self.debounce_defaults: Mapping[str, DebounceDefault] = settings.debounce  # the hub adds its own
        self._presence: Presence | None = None
        self._push_debounce: DebounceStore | None = None
        self._policy_redis: Redis | None = None
        self._loops: PolicyLoops | None = None

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        clock: Clock = system_clock,
        queue: Queue | None = None,
        devices: DeviceStore | None = None,
        providers: Mapping[str, Provider] | None = None,
        require_schema: bool = False,
    ) -> Runtime:
        """Connect the parts. SQLite (embedded) is migrated on the spot; PostgreSQL is migrated by an operator
        (`tidings db upgrade`). With `require_schema` (worker processes) a stale schema is refused at once."""
        devices_given = devices
        engine = devices.engine if devices is not None else db.create_engine(settings.effective_database_url)
        try:
            await db.prepare_schema(engine, require=require_schema)
        except BaseException:
            if devices_given is None:
                await engine.dispose()
            raise
        devices = devices or DeviceStore(engine, clock=clock, ttl_days=settings.device_ttl_days)
        owned_queue = queue is None
        queue = queue or create_queue(settings, clock=clock)
        return cls(
            settings, clock, engine, devices, queue, providers, owned_engine=devices_given is None,
            owned_queue=owned_queue,
        )  # fmt: skip

    async def close(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
            self.worker = None
        if self._loops is not None:
            await self._loops.stop()
            self._loops = None
        await self._close_policy()
        # Let the pruner finish a query in flight rather than cancel it: a cancelled aiosqlite query leaves its
        # thread running, and that thread keeps the process from exiting.
        self._stopping.set()
        for task in self._tasks:
            try:
                async with asyncio.timeout(CLOSE_GRACE):
                    await task
            except TimeoutError:
                pass  # asyncio.timeout cancelled it
            except Exception:
                log.exception("a background task failed while stopping")
        self._tasks.clear()
        if self._owned_providers and self._providers is not None:
            for provider in self._providers.values():
                with contextlib.suppress(Exception):
                    await provider.aclose()
        if self._owned_queue:
            await self.queue.close()
        await self.tickets.close()
        await self.inbox.close()
        if self._owned_engine:
            await self.engine.dispose()

    # --- the worker --------------------------------------------------------------------------------------

    @property
    def providers(self) -> Mapping[str, Provider]:
        """The push providers, built on first use; start-up says once what each unconfigured one misses."""
        if self._providers is None:
            from .push import build_providers

            self._providers = build_providers(self.settings, clock=self.clock)
            for name, provider in self._providers.items():
                if not provider.configured:
                    log.warning("push provider %s not configured (%s): its pushes are skipped", name,
                                provider.missing)  # fmt: skip
        return self._providers

    def build_worker(self, *, burst: bool = False, handle_signals: bool = False) -> Worker:
        return worker_from_settings(
            self.settings,
            queue=self.queue,
            devices=self.devices,
            log=self.deliveries,
            providers=self.providers,
            clock=self.clock,
            burst=burst,
            handle_signals=handle_signals,
            gate=self.gate,
            badges=UnreadBadges(
                self.inbox,
                channels=self.devices.channels_of,
                preferences=self.preferences.get_many,
                clock=self.clock,
            ),
        )

    def start_background(self) -> None:
        """Embedded mode: the push worker, its policy loops and the pruner as tasks of this process."""
        self.worker = RunningWorker.start(self.build_worker())
        self.start_pruner()
        self.start_policy_loops()

    def start_pruner(self, every: float = PRUNE_INTERVAL) -> None:
        self._tasks.append(asyncio.create_task(self._prune_forever(every), name="tidings-pruner"))

    async def run_worker(self, *, burst: bool = False) -> Worker:
        """`tidings worker`: the pruner in the background, the worker in the foreground (SIGTERM stops it)."""
        self.start_pruner()
        self.start_policy_loops()
        worker = self.build_worker(burst=burst, handle_signals=True)
        log.info("worker %s started on %s", worker.consumer, self.queue)
        await worker.run()
        log.info("worker stopped: %r", worker)
        return worker

    async def prune_once(self) -> None:
        """Delete devices past their TTL, delivery rows past retention, inbox items past retention or beyond a
        user's cap (idempotent; any process may)."""
        await prune_once(self.devices)
        removed = await self.deliveries.prune()
        if removed:
            log.info("pruned %d delivery log rows", removed)
        inbox = await self.inbox.prune()
        if inbox.total:
            log.info("pruned the inbox: %d expired items, %d entries over the cap, %d cursors", inbox.expired,
                     inbox.capped, inbox.cursors)  # fmt: skip

    async def _prune_forever(self, every: float) -> None:
        while True:
            try:
                await self.prune_once()
            except Exception:  # a failing database must not end pruning: the next round tries again
                log.exception("pruning failed; retrying in %.0f s", every)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return

    # --- what the hub asks of it -------------------------------------------------------------------------

    async def enqueue_pushes(self, events: Sequence[EventIn], ids: Sequence[str]) -> None:
        for event, event_id in zip(events, ids, strict=True):
            if event.push is None:
                continue
            await self.queue.enqueue(
                PushJob(
                    event_id=event_id,
                    event_type=event.type,
                    audience=event.to.model_dump(),
                    spec=event.push.model_dump(exclude_none=True),
                    data=event.data,
                    policy=self._job_policy(event),
                )
            )

    def _job_policy(self, event: EventIn) -> dict[str, object] | None:
        """What the worker's gate needs beyond the spec: scope, critical, the push debounce window."""
        policy: dict[str, object] = {}
        if event.scope is not None:
            policy["scope"] = event.scope
        if event.critical:
            policy["critical"] = True
        window = window_of(event, self.debounce_defaults, "push")
        if window is not None:
            policy["debounce"] = window.as_policy()
        return policy or None

    # --- delivery policy ---------------------------------------------------------------------------------

    def _redis(self) -> Redis:
        if self._policy_redis is None:
            from redis.asyncio import Redis

            self._policy_redis = Redis.from_url(
                self.settings.bus_url, socket_timeout=5, socket_connect_timeout=3, decode_responses=False
            )
        return self._policy_redis

    @property
    def presence(self) -> Presence:
        """Who is online: memory in embedded mode, Redis heartbeats across processes otherwise. Serving
        processes `start()` it (the hub does); a worker only asks."""
        if self._presence is None:
            s = self.settings
            self._presence = create_presence(
                s.bus_url,
                prefix=s.redis_prefix,
                options=PresenceOptions.from_settings(s, self.clock),
                client=self._redis() if s.uses_redis else None,
            )
        return self._presence

    def debounce_store(self, transport: str) -> DebounceStore:
        """A debounce window store (`stream` or `push`: separate keys, separate flushers)."""
        s = self.settings
        return create_debounce(
            s.bus_url,
            prefix=f"{s.redis_prefix}:{transport}",
            options=DebounceOptions.from_settings(s, self.clock),
            client=self._redis() if s.uses_redis else None,
        )

    @property
    def gate(self) -> Gate:
        if self._push_debounce is None:
            self._push_debounce = self.debounce_store("push")
        return Gate(
            preferences=self.preferences,
            presence=self.presence,
            held=self.held,
            debounce=self._push_debounce,
            queue=self.queue,
            log=self.deliveries,
            clock=self.clock,
        )

    def start_policy_loops(self) -> None:
        """The push debounce flusher and the quiet-hours release, beside the worker (once per runtime)."""
        if self._loops is None:
            gate = self.gate
            s = self.settings
            self._loops = PolicyLoops(
                gate.coalescer,
                gate.debounce,
                poll_seconds=s.debounce_poll_seconds,
                held_poll=s.held_poll_seconds,
            )
            self._loops.start()

    async def _close_policy(self) -> None:
        if self._presence is not None:
            await self._presence.stop()  # withdraws this process's streams (if it ever started)
            self._presence = None
        if self._push_debounce is not None:
            await self._push_debounce.close()
            self._push_debounce = None
        if self._policy_redis is not None:
            await self._policy_redis.aclose()
            self._policy_redis = None

    async def refresh_gauges(self) -> None:
        """Update the gauges that need a query, at most once a minute however often /metrics is scraped."""
        now = time.monotonic()
        if now - self._gauges_at < GAUGE_REFRESH:
            return
        self._gauges_at = now
        try:
            counts = await self.devices.count_active()
        except Exception:  # a scrape must not fail because the database is slow; readiness reports that
            log.warning("devices_active: counting failed", exc_info=True)
            return
        for provider in ("apns", "fcm", "webpush"):
            metrics.devices_active.labels(provider).set(counts.get(provider, 0))

    async def readiness(self) -> dict[str, bool]:
        checks = {"database": await self._database_ok()}
        if self.worker is not None:
            checks["worker"] = not self.worker.task.done()
        else:  # workers are processes of their own: one must have beaten within a visibility timeout
            try:
                checks["worker"] = await self.queue.live_workers(self.settings.push_visibility_timeout) > 0
            except BusUnavailable:
                checks["worker"] = False
        return checks

    async def _database_ok(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
        except Exception:  # any failure means "not ready"; the reason is logged
            log.warning("readiness: database unreachable", exc_info=True)
            return False
        return True


@asynccontextmanager
async def opened(settings: Settings, **parts: object) -> AsyncIterator[Runtime]:
    """`async with opened(settings) as runtime:` — for commands that need the stores for a moment."""
    runtime = await Runtime.open(settings, **parts)  # type: ignore[arg-type]
    try:
        yield runtime
    finally:
        await runtime.close()
