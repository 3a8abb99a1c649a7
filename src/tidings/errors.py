"""The one exception hierarchy; foreign errors are translated into these at module boundaries.

TidingsError
├── ConfigError          configuration that cannot work; the message names the variable (exit 2)
├── AuthError            a token that cannot be trusted (→ 401; code "forbidden" → 403)
├── InvalidInput         input that fails validation; `errors` names each field (→ 422)
│   ├── InvalidEvent     a published event
│   └── InvalidPreferences  a user's delivery preferences
├── BusUnavailable       the broker cannot take or carry events right now (→ 503)
│   └── PushNotQueued    the streams got the events, their push jobs could not be queued (→ 503, ids named)
├── NotFound             something the caller named does not exist for them (→ 404)
├── StoreUnavailable     the database is busy, unreachable, or dropped the connection (→ 503)
│   └── InboxNotStored   the streams got the events, the inbox could not keep them (→ 503, ids named)
├── NotStarted           a hub used outside its lifespan
├── PolicyViolation      input that is well-formed but not allowed (a device endpoint off the allow-list, ...)
├── SchemaNotReady       the database is not at the newest migration
└── ApiError             an HTTP answer: status, machine code, message, the offending field. Raised only by the
                         HTTP layer (`api/`); the core raises the errors above and `api/errors.py` maps them.

Foreign errors (Redis, sockets, the database driver) become ours through `map_exceptions`, `redis_errors` and
`database_errors`, never through a hand-written `except` block per call site.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from redis.exceptions import RedisError


class TidingsError(Exception):
    """Root of every error tidings raises on purpose."""


class ConfigError(TidingsError):
    """Configuration that cannot work; the message names the variable."""


class AuthError(TidingsError):
    """A credential that is missing, malformed, expired, revoked or signed by the wrong key."""

    def __init__(self, message: str, code: str = "invalid_token") -> None:
        super().__init__(message)
        self.code = code


class InvalidInput(TidingsError):
    """Input that cannot be accepted; `errors` is `[{"field", "message"}, ...]`, `field` the first one's."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        first = errors[0] if errors else {"field": "", "message": "invalid input"}
        super().__init__(f"{first['field']}: {first['message']}" if first["field"] else first["message"])
        self.errors = errors
        self.field = first["field"]


class InvalidEvent(InvalidInput):
    """Events a publisher sent that cannot be accepted."""


class InvalidPreferences(InvalidInput):
    """Delivery preferences that cannot be stored."""


class BusUnavailable(TidingsError):
    """The event bus (or the push queue's broker) cannot accept work now; answer 503 rather than drop."""


class PushNotQueued(BusUnavailable):
    """Events reached the streams but their push jobs could not be queued: say exactly which, so a publisher
    does not blindly retry (and duplicate) what the streams already delivered."""

    def __init__(self, event_ids: list[str]) -> None:
        super().__init__(
            f"events {', '.join(event_ids)} reached the streams, but their push jobs could not be queued"
        )
        self.event_ids = event_ids


class NotFound(TidingsError):
    """What the caller named does not exist — or is not theirs, which answers the same, so nothing can be probed."""


class StoreUnavailable(TidingsError):
    """The database cannot answer now (busy, unreachable, connection lost); answer 503 and let the client retry."""


class InboxNotStored(StoreUnavailable):
    """Events reached the streams but the database failed before their inbox items were kept: say which, so a
    publisher knows what a retry would duplicate on the streams."""

    def __init__(self, event_ids: list[str]) -> None:
        super().__init__(
            f"events {', '.join(event_ids)} reached the streams (and their pushes the queue), but the inbox "
            "could not keep them: the database failed"
        )
        self.event_ids = event_ids


class NotStarted(TidingsError):
    """A hub's stores were used before its lifespan started them."""


class PolicyViolation(TidingsError):
    """Well-formed input that a rule refuses; `field` names where (e.g. `subscription.endpoint`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class SchemaNotReady(TidingsError):
    """The database is not at the newest migration; every query would fail."""


class ApiError(TidingsError):
    """An error answered to an HTTP client as `{"error": code, "message": message, "field": field}`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}
        self.errors = errors

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.code, "message": self.message, "field": self.field}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def field_path(loc: Sequence[int | str]) -> str:
    """`("body", "to", "users", 0)` → `to.users[0]`: the name a publisher recognises."""
    out = ""
    for part in loc:
        if part in ("body", "query", "path", "header", "cookie"):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_details(errors: Sequence[Mapping[str, Any]], prefix: str = "") -> list[dict[str, str]]:
    """pydantic's error list as `[{"field": "to.users[0]", "message": ...}]`, each field under `prefix`."""
    details = []
    for err in errors:
        path = field_path(tuple(err.get("loc", ())))
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            message = "unknown field"
        details.append({"field": prefix + path if path else prefix.rstrip("."), "message": message})
    return details


ForeignErrors = type[BaseException] | tuple[type[BaseException], ...]


@contextmanager
def map_exceptions(mapping: Mapping[ForeignErrors, type[TidingsError]], what: str) -> Iterator[None]:
    """Re-raise foreign exceptions as ours (`raise Ours(f"{what}: {exc}") from exc`), first match wins."""
    try:
        yield
    except Exception as exc:
        for foreign, ours in mapping.items():
            if isinstance(exc, foreign):
                raise ours(f"{what}: {exc}") from exc
        raise


_BROKER_ERRORS: Mapping[ForeignErrors, type[TidingsError]] = {(RedisError, OSError): BusUnavailable}


def redis_errors(what: str = "redis unavailable") -> AbstractContextManager[None]:
    """`with redis_errors(): await client.xadd(...)` — a Redis or socket failure becomes BusUnavailable."""
    return map_exceptions(_BROKER_ERRORS, what)


@contextmanager
def database_errors(what: str = "the database is busy or unreachable") -> Iterator[None]:
    """`with database_errors(): await store.register(...)` — an outage becomes StoreUnavailable (a 503), while a
    query the database refuses for its own reasons stays what it is (a bug to see, not an outage to retry)."""
    from sqlalchemy.exc import DBAPIError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    try:
        yield
    except (OperationalError, PoolTimeout, OSError) as exc:
        raise StoreUnavailable(f"{what}: {exc}") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise StoreUnavailable(f"{what}: the connection was lost") from exc
        raise
