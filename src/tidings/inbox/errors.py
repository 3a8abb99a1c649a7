"""The inbox's errors: input the store refuses, each naming the offending field.

InvalidInput (tidings.errors, → 422)
└── InvalidInboxInput       malformed or over-budget input; `field` names it, nothing changed
    ├── InvalidCursor       a page cursor this server did not issue (field "cursor")
    └── TooManyIds          more ids in one request than the budget allows (field "ids")
NotFound (tidings.errors, → 404)
└── ItemsNotFound           ids that are not in the caller's inbox; nothing changed, `ids` lists them
"""

from __future__ import annotations

from collections.abc import Sequence

from tidings.errors import InvalidInput, NotFound

__all__ = ["InvalidCursor", "InvalidInboxInput", "ItemsNotFound", "TooManyIds"]


class InvalidInboxInput(InvalidInput):
    """Input the inbox cannot take; `field` names it and `message` says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__([{"field": field, "message": message}])
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


class ItemsNotFound(NotFound):
    """Some ids are not items of the caller's inbox (unknown, pruned, or someone else's); nothing changed."""

    def __init__(self, ids: Sequence[str]) -> None:
        shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        super().__init__(f"not in this inbox: {shown}")
        self.ids = list(ids)
