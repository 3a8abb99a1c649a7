"""Stream tickets: a short-lived, single-use stand-in for a user's JWT in an EventSource URL.

EventSource cannot send headers, and a long-lived JWT in a URL ends up in access logs and browser history. A
ticket is 128 random bits, valid once, for a few seconds (TIDINGS_STREAM_TICKET_SECONDS), and names the principal
it was issued to: the stream it opens still ends at the original token's `exp` and obeys its revocation.

Deliberate choices:
- Only the ticket's hash is stored (a leaked store holds no usable ticket), and the ticket is never logged.
- Single use across processes: Redis `SET key NX PX` at issue and `GETDEL` at use, so two processes racing on
  one ticket cannot both win; the memory store (one process, `memory://`) pops under the event loop alike.
- The memory store is bounded: beyond MAX_MEMORY_TICKETS outstanding tickets the oldest are forgotten (they
  then fail as invalid), so a client minting tickets in a loop cannot grow the process.
"""

from __future__ import annotations

import hashlib
import secrets
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import orjson

from .auth import Principal, TopicGrants
from .clock import Clock, system_clock
from .errors import AuthError, redis_errors

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .config import Settings

PREFIX = "st_"
MAX_MEMORY_TICKETS = 10_000


def new_ticket() -> str:
    return PREFIX + secrets.token_urlsafe(16)


def ticket_key(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def encode_principal(principal: Principal) -> bytes:
    """What a ticket stands for, as JSON (claims came from JSON, so they encode)."""
    topics = principal.topics
    return orjson.dumps(
        {
            "sub": principal.user_id,
            "roles": sorted(principal.roles),
            "jti": principal.jti,
            "exp": principal.expires_at,
            "iat": principal.issued_at,
            "claims": dict(principal.claims),
            "topics": {
                "exact": sorted(topics.exact),
                "prefixes": list(topics.prefixes),
                "every": topics.every,
            },
        },
        option=orjson.OPT_NON_STR_KEYS,
    )


def decode_principal(raw: bytes | str) -> Principal:
    value: dict[str, Any] = orjson.loads(raw)
    topics = value["topics"]
    return Principal(
        user_id=value["sub"],
        roles=frozenset(value["roles"]),
        jti=value["jti"],
        expires_at=value["exp"],
        claims=value["claims"],
        issued_at=value["iat"],
        topics=TopicGrants(frozenset(topics["exact"]), tuple(topics["prefixes"]), bool(topics["every"])),
    )


class TicketStore(ABC):
    """Issue a ticket for a principal; redeem it once."""

    @abstractmethod
    async def issue(self, principal: Principal, ttl: float) -> str:
        """A new ticket for `principal`, valid once within `ttl` seconds."""

    @abstractmethod
    async def redeem(self, ticket: str) -> Principal:
        """The principal of a valid, unused ticket (using it up); AuthError `invalid_ticket` otherwise."""

    async def close(self) -> None:  # noqa: B027 - a store without connections has nothing to release
        """Release connections."""


def _invalid() -> AuthError:
    return AuthError("the stream ticket is unknown, used or expired: fetch a new one", "invalid_ticket")


class MemoryTickets(TicketStore):
    """For one process (`memory://`)."""

    def __init__(self, *, clock: Clock = system_clock, limit: int = MAX_MEMORY_TICKETS) -> None:
        self._clock = clock
        self._limit = limit
        self._tickets: OrderedDict[str, tuple[float, bytes]] = OrderedDict()  # key -> (expires at, principal)

    def __len__(self) -> int:
        return len(self._tickets)

    async def issue(self, principal: Principal, ttl: float) -> str:
        now = self._clock()
        while self._tickets:  # issued in order with one ttl: the expired ones are at the front
            key, (expires, _) = next(iter(self._tickets.items()))
            if expires > now and len(self._tickets) < self._limit:
                break
            del self._tickets[key]
        ticket = new_ticket()
        self._tickets[ticket_key(ticket)] = (now + ttl, encode_principal(principal))
        return ticket

    async def redeem(self, ticket: str) -> Principal:
        entry = self._tickets.pop(ticket_key(ticket), None)
        if entry is None or entry[0] <= self._clock():
            raise _invalid()
        return decode_principal(entry[1])


class RedisTickets(TicketStore):
    """For every process sharing a Redis: `SET NX PX` at issue, `GETDEL` at use (Redis >= 6.2)."""

    def __init__(self, url: str, *, prefix: str, client: Redis | None = None) -> None:
        from redis.asyncio import Redis

        self._redis: Redis = client if client is not None else Redis.from_url(url, decode_responses=False)
        self._owned = client is None
        self._prefix = f"{prefix}:ticket:"

    async def issue(self, principal: Principal, ttl: float) -> str:
        ticket = new_ticket()
        with redis_errors():
            stored = await self._redis.set(
                self._prefix + ticket_key(ticket), encode_principal(principal), nx=True, px=int(ttl * 1000)
            )
        if not stored:  # 128 random bits never collide; refuse rather than hand out someone else's ticket
            raise AuthError("could not issue a stream ticket; retry", "invalid_ticket")
        return ticket

    async def redeem(self, ticket: str) -> Principal:
        with redis_errors():
            raw = await self._redis.getdel(self._prefix + ticket_key(ticket))
        if raw is None:
            raise _invalid()
        return decode_principal(raw)

    async def close(self) -> None:
        if self._owned:
            await self._redis.aclose()


def create_ticket_store(settings: Settings, *, clock: Clock = system_clock) -> TicketStore:
    """Redis when the bus is Redis (tickets are redeemed on any process), else in this process's memory."""
    if settings.uses_redis:
        return RedisTickets(settings.bus_url, prefix=settings.redis_prefix)
    return MemoryTickets(clock=clock)
