"""The worker's delivery policy for one job: given its resolved devices, who is sent to now.

Called by the worker once per job, on its first attempt at the audience (a retry only resends to devices that
asked for it: their users were decided already). Per user of the job's devices, with one preferences query
and — for `when: "offline"` — one presence round trip for the whole audience:

- `decide()` (policy/decide.py): skipped for presence, push off, the scope's push off, a mute, or quiet hours
  in mode `drop`; **held** for quiet hours (`HeldStore.hold`, coalesced per (user, scope); released later by
  delivery/coalesce.py); else sent.
- **Push debounce** (the job's `policy.debounce`): each user's window (user, scope) is offered the push; the
  first of a quiet period is sent at once, later ones are merged and sent once when the window closes
  (coalesce.py). Pushes of a debounced job carry the window's key as collapse key.

Every push not sent is a row of the delivery log, per **user** (device "-", outcome `skipped`, reason
`<code>; <detail>`): the decision is about a person, and a user's devices share it. `push_skipped_total
{reason}` counts the same rows. Critical jobs bypass mutes, quiet hours and debounce (not presence, not push
off). A job with no devices never gets here (its row is "no_active_devices").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from tidings.clock import Clock
from tidings.delivery.bookkeeping import DeliveryRecorder
from tidings.delivery.coalesce import Coalescer, PreferenceSource, for_user, offered, policy_of, skipped
from tidings.delivery.dispatch import DeviceLike
from tidings.delivery.log import DeliveryRecord
from tidings.delivery.queue import PushJob, Queue
from tidings.errors import BusUnavailable
from tidings.events import PushSpec
from tidings.policy.debounce import DebounceStore, Offer
from tidings.policy.decide import Action, PushPolicy, Reason, decide
from tidings.policy.held import HeldStore
from tidings.policy.presence import Presence
from tidings.policy.windows import Window, push_key
from tidings.push.payloads import collapse_id

log = logging.getLogger("tidings.delivery")

OFFER_CONCURRENCY = 32  # debounce offers in flight per job (one Redis round trip each)
DEBOUNCED = "debounced"


@dataclass(frozen=True, slots=True)
class Screened:
    """What is left of a job after policy: possibly a new spec (collapse key), the devices to send to now,
    and a row for every user not sent to."""

    job: PushJob
    spec: PushSpec
    devices: list[DeviceLike]
    rows: list[DeliveryRecord]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Gate:
    """One per worker; stateless between jobs (windows live in the debounce store, held pushes in SQL)."""

    def __init__(
        self,
        *,
        preferences: PreferenceSource,
        presence: Presence,
        held: HeldStore,
        debounce: DebounceStore | None,
        queue: Queue,
        log: DeliveryRecorder,
        clock: Clock,
    ) -> None:
        self.preferences = preferences
        self.presence = presence
        self.held = held
        self.debounce = debounce
        self.clock = clock
        self.coalescer = Coalescer(queue=queue, log=log, held=held, preferences=preferences, clock=clock)

    async def screen(self, job: PushJob, spec: PushSpec, devices: Sequence[DeviceLike]) -> Screened:
        users = list(dict.fromkeys(device.user_id for device in devices))
        policy = policy_of(job, spec)
        prefs = await self.preferences.get_many(users)
        online = await self.presence.online_many(users) if policy.when == "offline" else {}
        now = self.clock()
        send: list[str] = []
        rows: list[DeliveryRecord] = []
        for user in users:
            decision = decide(policy, prefs.get(user), online=online.get(user, False), now=now)
            if decision.action is Action.SEND:
                send.append(user)
            elif decision.action is Action.HOLD and decision.release_at is not None:
                rows.append(await self._hold(job, policy, user, decision.release_at, now))
            else:
                rows.append(skipped(job, user, decision.reason or Reason.PUSH_OFF, "", now))
        window = self._window(job, policy)
        if window is not None and send:
            send, held = await self._debounce(job, spec, window, send, now)
            rows += held
            spec = spec.model_copy(update={"collapse_key": spec.collapse_key or collapse_id(window.group)})
            job = replace(job, spec=spec.model_dump(exclude_none=True))
        keep = set(send)
        return Screened(job, spec, [d for d in devices if d.user_id in keep], rows)

    async def _hold(
        self, job: PushJob, policy: PushPolicy, user: str, until: float, now: float
    ) -> DeliveryRecord:
        count = await self.held.hold(
            user,
            policy.scope,
            event_id=job.event_id,
            payload=for_user(job, user).to_bytes(),
            release_at=until,
        )
        return skipped(job, user, Reason.QUIET_HOURS, f"held until {_iso(until)} ({count} held)", now)

    def _window(self, job: PushJob, policy: PushPolicy) -> Window | None:
        p = job.policy or {}
        raw = p.get("debounce")
        if raw is None or self.debounce is None or policy.critical or "merged" in p or "released" in p:
            return None  # coalesced pushes are not debounced again
        return Window.from_policy(raw)

    async def _debounce(
        self, job: PushJob, spec: PushSpec, window: Window, users: list[str], now: float
    ) -> tuple[list[str], list[DeliveryRecord]]:
        """Offer the push to each user's window; the users to send to now, and rows for those held."""
        assert self.debounce is not None
        store, data = self.debounce, offered(job, spec)
        scope = (job.policy or {}).get("scope")
        limit = asyncio.Semaphore(OFFER_CONCURRENCY)

        async def offer(user: str) -> Offer | None:
            key = push_key(job.event_type, window.group, scope, user)
            async with limit:
                try:
                    return await store.offer(
                        key, job.event_id, data, window=window.seconds, max_wait=window.max_wait
                    )
                except BusUnavailable as exc:  # no window to hold it in: send it now, lose nothing
                    log.warning("push debounce unavailable (%s): %s sent undebounced", exc, job.event_id)
                    return None

        offers = await asyncio.gather(*(offer(user) for user in users))
        send: list[str] = []
        rows: list[DeliveryRecord] = []
        for user, answer in zip(users, offers, strict=True):
            if answer is None or (answer.deliver and answer.merged is not None and answer.merged.count <= 1):
                send.append(user)  # the leading edge
            elif (
                answer.deliver and answer.merged is not None
            ):  # a due window, folded with this push: one push
                key = push_key(job.event_type, window.group, scope, user)
                await self.coalescer.deliver_merged(key, answer.merged)
            else:
                detail = f"held in its window until {_iso(answer.deadline)}, sent merged then"
                rows.append(skipped(job, user, DEBOUNCED, detail, now))
        return send, rows
