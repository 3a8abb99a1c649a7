"""The notification inbox: per-user history of events kept for later, with seen/read/archived state.

`InboxStore` is the whole API; the values it takes and returns live in `models`, its errors in `errors`.
"""

from __future__ import annotations

from tidings.inbox.errors import InvalidCursor, InvalidInboxInput, ItemsNotFound, TooManyIds
from tidings.inbox.models import (
    Counts,
    InboxItem,
    Mark,
    MarkResult,
    NewItem,
    Page,
    PruneReport,
    Reader,
    audience_channels,
)
from tidings.inbox.store import MAX_PAGE, InboxStore

__all__ = [
    "MAX_PAGE",
    "Counts",
    "InboxItem",
    "InboxStore",
    "InvalidCursor",
    "InvalidInboxInput",
    "ItemsNotFound",
    "Mark",
    "MarkResult",
    "NewItem",
    "Page",
    "PruneReport",
    "Reader",
    "TooManyIds",
    "audience_channels",
]
