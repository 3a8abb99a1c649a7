"""Coalesced pushes: the trailing push of a debounce window, and the release of pushes held by quiet hours.

Both turn many pushes for one user and scope into one, enqueued as an ordinary job for that user (so the gate
decides again at delivery time: presence, mutes and quiet hours as they are then):

- **Debounce** (`deliver_window`, the push flusher's callback): the window's merged data — lists unioned,
  booleans OR-ed, the rest the latest's — under the latest event's spec and id, `coalesced: <count>` in its
  data, and the window's key as collapse key (`apns-collapse-id`, FCM `collapse_key`, Web Push `Topic`) so
  the device keeps only the latest. Its job is `policy.merged = {count, ids}` and is not debounced again.
- **Quiet hours** (`release_due`, a loop in every worker): each due row of `HeldStore` is decided again
  (not critical, alert); sent → its latest push with `coalesced: <count>`, `policy.released`; still quiet
  (the user travelled) → deferred with its count; muted or turned off meanwhile → dropped with that reason.

The delivery log gets the story: every event folded in gets a `skipped` row naming the event whose push
carries it (`debounced; merged into <id>`, `quiet_hours_released; coalesced into <id>`), and the carrying
event a `coalesced` row with the count, before its own attempt rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from tidings import metrics
from tidings.clock import Clock
from tidings.delivery.bookkeeping import DeliveryRecorder
from tidings.delivery.log import DeliveryRecord
from tidings.delivery.queue import PushJob, Queue
from tidings.events import MAX_DATA_ENTRIES, PushSpec
from tidings.policy.debounce import Closed, DebounceFlusher, DebounceStore, Merged
from tidings.policy.decide import Action, PushPolicy, Reason, decide
from tidings.policy.held import Held, HeldStore
from tidings.policy.preferences import Preferences
from tidings.policy.windows import parse_key
from tidings.push.payloads import collapse_id, fit_push, push_data

log = logging.getLogger("tidings.delivery")

COALESCED = "coalesced"  # the push data key holding how many pushes one stands for


class PreferenceSource(Protocol):
    async def get_many(self, user_ids: Iterable[str]) -> Mapping[str, Preferences]: ...


def policy_of(job: PushJob, spec: PushSpec) -> PushPolicy:
    """The job's PushPolicy: its scope and critical flag (job.policy), `when` and mode (its spec)."""
    p = job.policy or {}
    return PushPolicy.of(
        job.event_type,
        p.get("scope"),
        critical=bool(p.get("critical")),
        when=spec.when or "always",
        mode=spec.mode,
    )


def row(job_or_id: PushJob | str, user: str, outcome: str, reason: str, now: float) -> DeliveryRecord:
    """A policy row: per user (no device), `reason` = `<code>[; <detail>]`."""
    event_id, attempt = (
        (job_or_id, 1) if isinstance(job_or_id, str) else (job_or_id.event_id, job_or_id.attempt)
    )
    return DeliveryRecord(event_id, None, user, "-", outcome, reason, None, attempt, None, now)


def skipped(job_or_id: PushJob | str, user: str, reason: str, detail: str, now: float) -> DeliveryRecord:
    metrics.push_skipped_total.labels(reason).inc()
    return row(job_or_id, user, "skipped", f"{reason}; {detail}" if detail else reason, now)


def for_user(job: PushJob, user: str, **policy: Any) -> PushJob:
    """The job addressed to one user (the unit pushes are held and coalesced by)."""
    merged = {**(job.policy or {}), **policy}
    return PushJob(job.event_id, job.event_type, {"users": [user]}, job.spec, job.data, policy=merged or None)


def with_count(spec: PushSpec, data: Mapping[str, Any], count: int) -> PushSpec:
    """The spec whose payload says `coalesced: count` (kept within the data budget; nothing for one push)."""
    if count <= 1:
        return spec
    carried = push_data(spec, data)
    if len(carried) >= MAX_DATA_ENTRIES and COALESCED not in carried:
        return spec
    return spec.model_copy(update={"data": {**carried, COALESCED: count}})


# --- debounce windows ---------------------------------------------------------------------------------------


def offered(job: PushJob, spec: PushSpec) -> dict[str, Any]:
    """What a push offers its window: the data it carries (spec.data, else the event data) under `.`-prefixed
    keys, so they merge field by field, and the spec and policy under `@` (the latest wins)."""
    in_spec = bool(spec.data)
    source = spec.data if in_spec else job.data
    meta = {
        "spec": spec.model_dump(exclude_none=True, exclude={"data"}),
        "in": "spec" if in_spec else "event",
        "policy": {k: v for k, v in (job.policy or {}).items() if k in ("scope", "critical")},
    }
    return {"@": meta, **{"." + key: value for key, value in source.items()}}


def trailing_job(key: str, merged: Merged) -> PushJob:
    """The one push a closed window becomes (see the module docstring)."""
    _, event_type, group, _scope, user = parse_key(key)
    meta = merged.data.get("@") or {}
    data = {k[1:]: v for k, v in merged.data.items() if k.startswith(".")}
    spec_fields = dict(meta.get("spec") or {})
    event_data: dict[str, Any] = data
    if meta.get("in") == "spec":
        spec_fields["data"], event_data = data, {}
    spec = with_count(PushSpec.model_validate(spec_fields), event_data, merged.count)
    spec = spec.model_copy(update={"collapse_key": spec.collapse_key or collapse_id(group)})
    spec = fit_push(spec, event_type, event_data)
    policy = {**(meta.get("policy") or {}), "merged": {"count": merged.count, "ids": list(merged.event_ids)}}
    return PushJob(
        merged.latest_id,
        event_type,
        {"users": [user]},
        spec.model_dump(exclude_none=True),
        event_data,
        policy=policy,
    )


@dataclass
class Coalescer:
    """Builds and enqueues coalesced pushes; writes their part of the delivery log."""

    queue: Queue
    log: DeliveryRecorder
    held: HeldStore
    preferences: PreferenceSource
    clock: Clock
    batch: int = 100

    async def deliver_window(self, closed: Closed) -> None:
        """A push window closed with events merged: one push for its user (raising leaves it for a retry)."""
        await self.deliver_merged(closed.key, closed.merged)

    async def deliver_merged(self, key: str, merged: Merged) -> None:
        """Enqueue the one push that stands for `merged` (a closed window, or a due one a push folded into)."""
        job = trailing_job(key, merged)
        user = job.audience["users"][0]
        await self.queue.enqueue(job)
        now, latest = self.clock(), job.event_id
        rows = [row(latest, user, "coalesced", f"debounced; one push for {merged.count} event(s)", now)]
        rows += [
            row(i, user, "skipped", f"debounced; merged into {latest}", now) for i in merged.event_ids[:-1]
        ]
        await self.log.record(rows)

    async def release_due(self) -> int:
        """One round: release (or defer, or drop) the held pushes that are due; returns how many rows it took."""
        claimed = await self.held.claim_due(None, self.batch)
        if not claimed:
            return 0
        prefs = await self.preferences.get_many({h.user_id for h in claimed})
        now = self.clock()
        done: list[Held] = []
        rows: list[DeliveryRecord] = []
        for held in claimed:
            job = PushJob.from_bytes(orjson.dumps(held.payload))
            spec = PushSpec.model_validate(job.spec)
            policy = policy_of(job, spec)
            decision = decide(
                PushPolicy(policy.scopes, False, "always", False),
                prefs.get(held.user_id),
                online=False,
                now=now,
            )
            if decision.action is Action.HOLD and decision.release_at is not None:
                await self.held.defer(held, decision.release_at)
                continue
            if decision.action is Action.SEND:
                released = with_count(spec, job.data, held.count)
                policy_fields = {"released": {"count": held.count, "ids": list(held.replaced_ids)}}
                await self.queue.enqueue(
                    PushJob(job.event_id, job.event_type, job.audience, released.model_dump(exclude_none=True),
                            job.data, policy={**(job.policy or {}), **policy_fields})
                )  # fmt: skip
                rows.append(row(held.event_id, held.user_id, "coalesced", _released(held), now))
                rows += [
                    skipped(
                        i, held.user_id, Reason.QUIET_HOURS_RELEASED, f"coalesced into {held.event_id}", now
                    )
                    for i in held.replaced_ids
                ]
            else:
                reason = decision.reason or Reason.QUIET_HOURS_DROP
                rows += [
                    skipped(i, held.user_id, reason, "when held pushes were due for release", now)
                    for i in (*held.replaced_ids, held.event_id)
                ]
            done.append(held)
        await self.held.ack(done)
        await self.log.record(rows)
        return len(claimed)


def _released(held: Held) -> str:
    return f"{Reason.QUIET_HOURS_RELEASED}; released after quiet hours for {held.count} held push(es)"


class PolicyLoops:
    """The worker side's background work: the push debounce flusher and the quiet-hours release loop."""

    def __init__(
        self, coalescer: Coalescer, debounce: DebounceStore | None, *, poll_seconds: float, held_poll: float
    ) -> None:
        self.coalescer = coalescer
        self.flusher = (
            DebounceFlusher(
                debounce, coalescer.deliver_window, poll_seconds=poll_seconds, clock=coalescer.clock
            )
            if debounce is not None
            else None
        )
        self._held_poll = held_poll
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tidings-policy-loops")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.flusher is not None:
            await self.flusher.stop()

    async def _run(self) -> None:
        if self.flusher is not None:
            await self.flusher.start()
        while True:
            try:
                while await self.coalescer.release_due() >= self.coalescer.batch:
                    pass  # a full batch: more may be due at once
            except Exception:  # a database blip must not end releasing; the rows stay held
                log.exception("releasing held pushes failed; retrying in %.0f s", self._held_poll)
            await asyncio.sleep(self._held_poll)
