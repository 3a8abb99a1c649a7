"""Small fakes of the registry and provider contracts, for the worker's unit tests only.

The integration tests (test_worker_sandbox.py, test_worker_kill.py) use the real DeviceStore and the sandbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, ClassVar

from tidings.delivery.log import DeliveryRecord
from tidings.push.base import Notification, Outcome, Provider, Result, Target


@dataclass(frozen=True)
class FakeDevice:
    id: str
    user_id: str
    provider: str
    token: str
    p256dh: str | None = None
    auth: str | None = None
    environment: str | None = None
    app_id: str | None = None
    disabled_at: datetime | None = None
    disabled_reason: str | None = None


class FakeStore:
    def __init__(self, devices: Sequence[FakeDevice] = ()) -> None:
        self.devices = {d.id: d for d in devices}
        self.used: list[list[str]] = []
        self.disabled: list[tuple[str, str, str]] = []
        self.seen_before: list[float | None] = []
        self.fail_lookups = 0

    async def list_active_for_audience(
        self,
        *,
        users: Sequence[str] = (),
        roles: Sequence[str] = (),
        topics: Sequence[str] = (),
        broadcast: bool = False,
    ) -> list[FakeDevice]:
        if self.fail_lookups:
            self.fail_lookups -= 1
            raise ConnectionError("database is down")
        return [
            d for d in self.devices.values() if d.disabled_at is None and (broadcast or d.user_id in users)
        ]

    async def get(self, device_id: str) -> FakeDevice | None:
        return self.devices.get(device_id)

    async def disable(
        self, provider: str, token: str, reason: str, *, seen_before: float | None = None
    ) -> bool:
        self.disabled.append((provider, token, reason))
        self.seen_before.append(seen_before)
        for d in self.devices.values():
            if d.provider == provider and d.token == token:
                self.devices[d.id] = replace(d, disabled_at=datetime.now(UTC), disabled_reason=reason)
                return True
        return False

    async def mark_used(self, ids: Sequence[str]) -> None:
        self.used.append(list(ids))


Behaviour = Result | Callable[[Target], Awaitable[Result]]


class FakeProvider(Provider):
    name: ClassVar[str] = "fake"

    def __init__(
        self, name: str, answers: dict[str, Behaviour] | None = None, configured: bool = True
    ) -> None:
        self.name = name  # type: ignore[misc]
        self.answers = answers or {}
        self._configured = configured
        self.prepared: list[Notification] = []
        self.sent: list[str] = []
        self.active = 0
        self.max_active = 0

    @property
    def configured(self) -> bool:
        return self._configured

    def prepare(self, note: Notification) -> Any:
        self.prepared.append(note)
        return {"event": note.event_id}

    async def send(self, target: Target, prepared: Any) -> Result:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            self.sent.append(target.token)
            answer = self.answers.get(target.token, Result(Outcome.delivered, status=200))
            if isinstance(answer, Result):
                await asyncio.sleep(0)
                return answer
            return await answer(target)
        finally:
            self.active -= 1


@dataclass
class FakeLog:
    batches: list[list[DeliveryRecord]] = field(default_factory=list)

    async def record(self, rows: Sequence[DeliveryRecord]) -> None:
        self.batches.append(list(rows))

    @property
    def rows(self) -> list[DeliveryRecord]:
        return [r for batch in self.batches for r in batch]
