"""Debounce windows in one process: a dict of windows, a heap of deadlines, leases for claimed edges.

The same semantics as the Redis store (see `debounce.py`), decided in the same whole milliseconds. A window
that ends with nothing held is dropped when its deadline passes (on the next `claim_due`), so memory follows
the keys active within their last window.
"""

from __future__ import annotations

import heapq
import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .debounce import Closed, DebounceOptions, DebounceStore, Offer, log, to_ms, window_ms
from .debounce_merge import State, decode, empty_state, encode_fields, merge, single


@dataclass(slots=True)
class _Window:
    start: int
    deadline: int
    window: int
    max_wait: int
    state: State | None = None


@dataclass(slots=True)
class _Claim:
    key: str
    state: State
    closed_at: int
    attempt: int
    lease_until: int


class MemoryDebounce(DebounceStore):
    """Windows for one process; the flusher and the publishers share it."""

    def __init__(self, options: DebounceOptions | None = None) -> None:
        self._options = options or DebounceOptions()
        self._clock = self._options.clock
        self._windows: dict[str, _Window] = {}
        self._deadlines: list[tuple[int, int, str]] = []  # (deadline, seq, key); stale entries skipped
        self._claims: dict[str, _Claim] = {}
        self._leases: list[tuple[int, str]] = []  # (lease_until, token); stale entries skipped
        self._seq = itertools.count()
        self._tokens = itertools.count()
        self._token_prefix = os.urandom(4).hex()

    def __repr__(self) -> str:
        return f"<MemoryDebounce windows={len(self._windows)} claimed={len(self._claims)}>"

    def _schedule(self, key: str, deadline: int) -> None:
        heapq.heappush(self._deadlines, (deadline, next(self._seq), key))

    async def offer(
        self,
        key: str,
        event_id: str,
        data: Mapping[str, Any],
        *,
        window: float,
        max_wait: float | None = None,
    ) -> Offer:
        w, mw = window_ms(window, max_wait)
        now = to_ms(self._clock())
        current = self._windows.get(key)
        if current is None or now >= current.deadline:
            merged = single(event_id, data)
            if current is not None and current.state is not None:  # due, not yet claimed: all goes now
                self._fold(current.state, event_id, data)
                merged = decode(current.state)
            self._windows[key] = _Window(now, now + w, w, mw)
            self._schedule(key, now + w)
            return Offer(True, merged, (now + w) / 1000)
        if current.state is None:
            current.state = empty_state()
        self._fold(current.state, event_id, data)
        deadline = max(current.deadline, min(now + current.window, current.start + current.max_wait))
        if deadline != current.deadline:
            current.deadline = deadline
            self._schedule(key, deadline)
        return Offer(False, None, deadline / 1000)

    def _fold(self, state: State, event_id: str, data: Mapping[str, Any]) -> None:
        opts = self._options
        merge(state, encode_fields(data), event_id, max_list_items=opts.max_list_items, max_ids=opts.max_ids)

    async def claim_due(self, now: float | None = None, limit: int = 100) -> list[Closed]:
        at = to_ms(self._clock() if now is None else now)
        out = self._reclaim(at, limit)
        while self._deadlines and self._deadlines[0][0] <= at and len(out) < limit:
            deadline, _, key = heapq.heappop(self._deadlines)
            current = self._windows.get(key)
            if current is None or current.deadline != deadline:
                continue  # superseded: the window slid, reopened or is gone
            if current.state is None:
                del self._windows[key]  # ended quietly: the next event leads
                continue
            token = f"{self._token_prefix}:{next(self._tokens)}"
            claim = _Claim(key, current.state, at, 1, at + to_ms(self._options.lease))
            self._claims[token] = claim
            heapq.heappush(self._leases, (claim.lease_until, token))
            current.state, current.start, current.deadline = None, at, at + current.window
            self._schedule(key, current.deadline)
            out.append(Closed(key, decode(claim.state), at / 1000, token, 1))
        return out

    def _reclaim(self, at: int, limit: int) -> list[Closed]:
        out: list[Closed] = []
        while self._leases and self._leases[0][0] <= at and len(out) < limit:
            lease_until, token = heapq.heappop(self._leases)
            claim = self._claims.get(token)
            if claim is None or claim.lease_until != lease_until:
                continue
            claim.attempt += 1
            if claim.attempt > self._options.max_attempts:
                del self._claims[token]
                log.error(
                    "debounce: the trailing edge of %r dropped after %d attempts",
                    claim.key,
                    claim.attempt - 1,
                )
                continue
            claim.lease_until = at + to_ms(self._options.lease)
            heapq.heappush(self._leases, (claim.lease_until, token))
            out.append(Closed(claim.key, decode(claim.state), claim.closed_at / 1000, token, claim.attempt))
        return out

    async def ack(self, closed: Closed) -> None:
        self._claims.pop(closed.token, None)
