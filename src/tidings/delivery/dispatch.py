"""One job's sends: resolve the audience to devices, build each provider's payload once, send to every device
with bounded concurrency per provider, and apply what each Result means to the registry.

Everything a provider or the registry can throw is turned into a value here: a send that raises or overruns
`send_timeout` becomes `retry_later`, an unknown provider becomes `skipped: not_configured`, a payload that
cannot be built becomes `rejected`. The worker above decides only about the job (ack, retry, dead-letter).

A spec with `badge: "unread"` is sent with each device's unread inbox count (`badges`, asked once per send for
all its devices): the payload is built once per provider and distinct count, not once per device. If the
counts cannot be had (the database), the push goes without a badge rather than not at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from tidings.delivery.queue import PushJob
from tidings.events import PushSpec
from tidings.push.base import NOT_CONFIGURED, Notification, Outcome, Provider, Result, Target

logger = logging.getLogger("tidings.delivery")

LOOKUP_CONCURRENCY = 8

Badges = Callable[[Sequence["DeviceLike"]], Awaitable[Mapping[str, int]]]
"""{device id: unread inbox count} for devices (tidings.inbox.badges.UnreadBadges)."""


class DeviceLike(Protocol):
    """The fields of a registry Device the worker reads."""

    @property
    def id(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def token(self) -> str: ...
    @property
    def p256dh(self) -> str | None: ...
    @property
    def auth(self) -> str | None: ...
    @property
    def environment(self) -> str | None: ...
    @property
    def app_id(self) -> str | None: ...


class DeviceSource(Protocol):
    """The part of `tidings.registry.store.DeviceStore` the worker uses."""

    async def list_active_for_audience(
        self, *, users: Sequence[str], roles: Sequence[str], topics: Sequence[str], broadcast: bool
    ) -> Sequence[Any]: ...
    async def get(self, device_id: str) -> Any: ...
    async def disable(
        self, provider: str, token: str, reason: str, *, seen_before: float | None = None
    ) -> Any: ...
    async def mark_used(self, ids: Sequence[str]) -> Any: ...


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one send to one device came to, and how long it took."""

    device: DeviceLike
    result: Result
    latency_ms: float | None
    sent_at: float | None = None  # epoch seconds the request started (None: nothing was sent)


def target_of(device: DeviceLike) -> Target:
    # A device registered with an app id (bundle id) is pushed on that topic; else the configured APNs topic.
    topic = device.app_id if device.provider == "apns" and device.app_id else None
    return Target(
        device_id=device.id,
        provider=device.provider,
        token=device.token,
        environment=device.environment,
        topic=topic,
        p256dh=device.p256dh,
        auth=device.auth,
    )


def _answered(attempts: list[Attempt], on_answer: Callable[[Attempt], None] | None) -> list[Attempt]:
    if on_answer is not None:
        for attempt in attempts:
            on_answer(attempt)
    return attempts


def _is_active(device: Any) -> bool:
    return device is not None and getattr(device, "disabled_at", None) is None


class Dispatcher:
    """Sends jobs for a worker; the per-provider semaphores are shared by all the worker's jobs."""

    def __init__(
        self,
        *,
        devices: DeviceSource,
        providers: Mapping[str, Provider],
        concurrency: int,
        send_timeout: float,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.perf_counter,
        badges: Badges | None = None,
    ) -> None:
        self.devices = devices
        self.badges = badges
        self.providers = providers
        self.concurrency = concurrency
        self.send_timeout = send_timeout
        self._monotonic = monotonic
        self._clock = clock
        self._lookups = asyncio.Semaphore(LOOKUP_CONCURRENCY)
        self._limits: dict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(concurrency))

    async def resolve(self, job: PushJob) -> list[DeviceLike]:
        """The devices this attempt is for: the audience's active devices, or a retry's named subset."""
        if job.device_ids is not None:
            found = await asyncio.gather(*(self._get(i) for i in job.device_ids))
            return [d for d in found if _is_active(d)]
        a = job.audience
        found_list = await self.devices.list_active_for_audience(
            users=list(a.get("users") or ()),
            roles=list(a.get("roles") or ()),
            topics=list(a.get("topics") or ()),
            broadcast=bool(a.get("broadcast", False)),
        )
        return list(found_list)

    async def _get(self, device_id: str) -> Any:
        # Bounded: a retry of thousands of devices must not take every pooled database connection at once.
        async with self._lookups:
            return await self.devices.get(device_id)

    async def send(
        self,
        job: PushJob,
        spec: PushSpec,
        devices: Sequence[DeviceLike],
        on_answer: Callable[[Attempt], None] | None = None,
    ) -> list[Attempt]:
        """Send to every device, each provider's payload built once; never raises for a device's sake.
        `on_answer` sees each send's Attempt as it completes (the job's progress, progress.py)."""
        unread = await self._unread(spec, devices)
        by_provider: dict[tuple[str, int | None], list[DeviceLike]] = defaultdict(list)
        for device in devices:
            by_provider[device.provider, unread.get(device.id)].append(device)
        note = Notification(event_id=job.event_id, event_type=job.event_type, spec=spec, data=job.data)
        groups = [
            self._send_group(name, group, note if count is None else replace(note, unread=count), on_answer)
            for (name, count), group in by_provider.items()
        ]
        if len(groups) == 1:  # the common case; a gather would cost a task per group
            return await groups[0]
        attempts: list[Attempt] = []
        for done in await asyncio.gather(*groups):
            attempts.extend(done)
        return attempts

    async def _unread(self, spec: PushSpec, devices: Sequence[DeviceLike]) -> Mapping[str, int]:
        if spec.badge != "unread" or self.badges is None or not devices:
            return {}
        try:
            return await self.badges(devices)
        except Exception:  # the inbox's database: the push still goes, without a badge
            logger.warning("unread badges could not be counted; sending without a badge", exc_info=True)
            return {}

    async def _send_group(
        self,
        name: str,
        group: list[DeviceLike],
        note: Notification,
        on_answer: Callable[[Attempt], None] | None,
    ) -> list[Attempt]:
        provider = self.providers.get(name)
        if provider is None or not provider.configured:
            return _answered([Attempt(d, NOT_CONFIGURED, None) for d in group], on_answer)
        try:
            prepared = provider.prepare(note)
        except Exception as exc:  # a payload we cannot build will not build next time either
            logger.exception("%s: building the payload for event %s failed", name, note.event_id)
            failed = Result(Outcome.rejected, f"prepare_failed: {type(exc).__name__}: {exc}")
            return _answered([Attempt(d, failed, None) for d in group], on_answer)
        pending = deque(group)
        attempts: list[Attempt] = []
        limit = self._limits[name]

        async def runner() -> None:
            # A few runners pull from one deque: `concurrency` tasks, not one per device in the audience.
            while pending:
                device = pending.popleft()
                async with limit:
                    attempt = await self._send_one(provider, device, prepared)
                attempts.append(attempt)
                if on_answer is not None:
                    on_answer(attempt)

        runners = min(self.concurrency, len(group))
        if runners == 1:
            await runner()
        else:
            await asyncio.gather(*(runner() for _ in range(runners)))
        return attempts

    async def _send_one(self, provider: Provider, device: DeviceLike, prepared: Any) -> Attempt:
        sent_at, started = self._clock(), self._monotonic()
        try:
            async with asyncio.timeout(self.send_timeout):
                result = await provider.send(target_of(device), prepared)
        except TimeoutError:
            result = Result(Outcome.retry_later, f"timeout after {self.send_timeout:g}s")
        except Exception as exc:  # providers should return a Result; a bug or surprise must not end the job
            logger.exception("%s: send to device %s raised", provider.name, device.id)
            result = Result(Outcome.retry_later, f"error: {type(exc).__name__}: {exc}")
        if not isinstance(result, Result):
            result = Result(Outcome.retry_later, f"error: provider returned {type(result).__name__}")
        return Attempt(device, result, (self._monotonic() - started) * 1000.0, sent_at)

    def alert_credentials(self, attempts: Sequence[Attempt]) -> None:
        """One error line per provider that refused our credentials (devices are left enabled)."""
        refused: dict[str, list[Attempt]] = defaultdict(list)
        for a in attempts:
            if a.result.outcome is Outcome.credentials:
                refused[a.device.provider].append(a)
        for name, group in refused.items():  # once per provider and job, not once per device
            first = group[0].result
            logger.error(
                "%s refused our credentials (%s %s) for %d device(s); fix the configuration "
                "(devices left enabled)",
                name,
                first.status,
                first.reason,
                len(group),
            )

    async def disable_dead(self, attempts: Sequence[Attempt]) -> None:
        """Disable the devices whose token the provider called dead (a registry effect that cannot wait;
        last_used_at of the delivered goes with the delivery-log rows, see bookkeeping.py)."""
        for a in attempts:
            if a.result.outcome is not Outcome.dead_token:
                continue
            try:
                # seen_before: a device that registered again after we sent (app reinstalled, same token) keeps
                # its fresh registration instead of being disabled by an answer about the old one.
                await self.devices.disable(
                    a.device.provider, a.device.token, a.result.reason or "dead_token", seen_before=a.sent_at
                )
            except Exception:
                logger.exception("disabling device %s failed", a.device.id)
