"""The inbox's values: who reads (Reader), what is stored (NewItem), what comes back (InboxItem, Page, Counts).

Every value is a frozen dataclass; NewItem and Reader check their sizes on construction so the store never
sends the database something a column cannot hold (PostgreSQL would refuse it mid-transaction).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from tidings.inbox.errors import InvalidInboxInput

if TYPE_CHECKING:
    from tidings.auth import Principal

__all__ = [
    "BROADCAST",
    "MAX_READER_NAMES",
    "Counts",
    "InboxItem",
    "Mark",
    "MarkResult",
    "NewItem",
    "Page",
    "PruneReport",
    "Reader",
]

BROADCAST = "*"
MAX_NAME = 256
# Each role or topic of a reader is one index range scan per query: a bound keeps a list or a count cheap.
MAX_READER_NAMES = 64

Mark = Literal["seen", "read", "archive"]


def _check_name(field_name: str, value: str) -> None:
    if not 0 < len(value) <= MAX_NAME or "\x00" in value:
        raise InvalidInboxInput(field_name, f"must be 1-{MAX_NAME} characters without NUL")


def _check_text(field_name: str, value: str | None, limit: int, *, required: bool = False) -> None:
    if value is None or (required and not value):
        if required:
            raise InvalidInboxInput(field_name, "is required")
        return
    if len(value) > limit or "\x00" in value:
        raise InvalidInboxInput(field_name, f"must be at most {limit} characters without NUL")


@dataclass(frozen=True, slots=True)
class Reader:
    """Whose inbox: a user, and the roles and topics of the reading token (a member is whoever holds them now)."""

    user_id: str
    roles: frozenset[str] = frozenset()
    topics: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        _check_name("user", self.user_id)
        object.__setattr__(self, "roles", frozenset(self.roles))
        object.__setattr__(self, "topics", frozenset(self.topics))
        if len(self.roles) + len(self.topics) > MAX_READER_NAMES:
            raise InvalidInboxInput("roles", f"at most {MAX_READER_NAMES} roles and topics per reader")

    @classmethod
    def of(cls, principal: Principal) -> Reader:
        """The reader a token makes: its user, its roles, and the topics its topics claim names exactly (a
        pattern such as `orders.*` grants reading but names no topic to follow)."""
        return cls(principal.user_id, principal.roles, principal.topics.exact)

    def channels(self) -> tuple[str, ...]:
        """The audience channels this reader belongs to, spelled as the entries store them."""
        # A name that could not be stored cannot have been addressed either: skipped, not an error.
        roles = sorted(f"r:{r}" for r in self.roles if 0 < len(r) <= MAX_NAME)
        topics = sorted(f"t:{t}" for t in self.topics if 0 < len(t) <= MAX_NAME)
        return (f"u:{self.user_id}", *roles, *topics, BROADCAST)


def audience_channels(
    users: Iterable[str], roles: Iterable[str], topics: Iterable[str], broadcast: bool
) -> tuple[str, ...]:
    """The entry channels of an item's audience: one per user, one per role or topic, `*` for everyone."""
    if broadcast:
        return (BROADCAST,)
    out: dict[str, None] = {}
    for prefix, names, what in (("u:", users, "users"), ("r:", roles, "roles"), ("t:", topics, "topics")):
        for name in names:
            _check_name(what, name)
            out[prefix + name] = None
    if not out:
        raise InvalidInboxInput("to", "the audience is empty")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class NewItem:
    """An inbox item as the publish path hands it over (content only; the audience is passed beside it)."""

    event_id: str
    type: str
    title: str
    body: str = ""
    url: str | None = None
    icon: str | None = None
    category: str | None = None
    data: Mapping[str, Any] | None = None
    scope: str | None = None
    critical: bool = False
    occurred_at: datetime | None = None  # default: the store's clock at insert

    def __post_init__(self) -> None:
        _check_text("event_id", self.event_id, 64, required=True)
        _check_text("type", self.type, 128, required=True)
        _check_text("title", self.title, 256)  # may be empty; None is not a title
        _check_text("body", self.body, 4096)
        if self.title is None or self.body is None:
            raise InvalidInboxInput("title" if self.title is None else "body", "must be a string")
        _check_text("url", self.url, 2048)
        _check_text("icon", self.icon, 2048)
        _check_text("category", self.category, 64)
        _check_text("scope", self.scope, 256)
        if self.occurred_at is not None and self.occurred_at.tzinfo is None:
            raise InvalidInboxInput("occurred_at", "needs a time zone")


@dataclass(frozen=True, slots=True)
class InboxItem:
    """One item as its reader sees it, with that reader's state."""

    id: str  # the item's public id (shared by every recipient of the event)
    event_id: str
    type: str
    title: str
    body: str
    url: str | None
    icon: str | None
    category: str | None
    data: Mapping[str, Any] | None
    scope: str | None
    critical: bool
    occurred_at: datetime
    created_at: datetime
    seen: bool
    read: bool
    archived: bool


@dataclass(frozen=True, slots=True)
class Page:
    """A page of an inbox, newest first; pass `next_cursor` to get the next one (None: this was the last)."""

    items: list[InboxItem]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Counts:
    """Unseen and unread items of an inbox (archived ones count as neither); unread per named category."""

    unseen: int
    unread: int
    by_category: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MarkResult:
    """What a mark did: how many items it named (ids), or up to which item id it moved the cursor (`all`)."""

    mark: Mark
    items: int
    up_to: str | None = None


@dataclass(frozen=True, slots=True)
class PruneReport:
    expired: int  # items older than the retention (with all their entries and marks)
    capped: int  # direct entries beyond a user's cap
    cursors: int  # cursors nobody moved within the retention

    @property
    def total(self) -> int:
        return self.expired + self.capped + self.cursors
