"""The inbox's errors: input the store refuses, each naming the offending field.

TidingsError
└── InboxError
    ├── InvalidInboxInput   malformed or over-budget input; `field` names it (→ 400/422), nothing changed
    │   ├── InvalidCursor   a page cursor this server did not issue (field "cursor")
    │   └── TooManyIds      more ids in one request than the budget allows (field "ids")
    └── ItemsNotFound       ids that are not in the caller's inbox (→ 404); nothing changed, `ids` lists them

(These could move into `tidings.errors` when the HTTP layer maps them; they derive from its root already.)
"""

from __future__ import annotations

from collections.abc import Sequence

from tidings.errors import TidingsError

__all__ = ["InboxError", "InvalidCursor", "InvalidInboxInput", "ItemsNotFound", "TooManyIds"]


class InboxError(TidingsError):
    """Root of the inbox's errors."""


class InvalidInboxInput(InboxError):
    """Input the inbox cannot take; `field` names it and `message` says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InvalidCursor(InvalidInboxInput):
    """A page cursor that does not decode to one this server issued."""

    def __init__(self, message: str) -> None:
        super().__init__("cursor", message)


class TooManyIds(InvalidInboxInput):
    """One request named more items than `limit`."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__("ids", f"{count} ids given; at most {limit} per request (use `all` for everything)")
        self.count = count
        self.limit = limit


class ItemsNotFound(InboxError):
    """Some ids are not items of the caller's inbox (unknown, pruned, or someone else's); nothing changed."""

    def __init__(self, ids: Sequence[str]) -> None:
        shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        super().__init__(f"not in this inbox: {shown}")
        self.ids = list(ids)
