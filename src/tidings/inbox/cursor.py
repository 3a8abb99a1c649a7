"""Text forms of positions in an inbox: page cursors (opaque) and item ids (decimal), parsed strictly.

A page cursor names the last item of the previous page; the next page holds the items older than it. Because
item order is the insertion sequence, items that arrive while a reader pages sort before every cursor already
handed out: a page never repeats nor skips an item. The cursor is opaque to clients (base64url of a versioned
string) so its format can change; it is not secret — forging one only pages the forger's own inbox.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

from tidings.inbox.errors import InvalidCursor, InvalidInboxInput, TooManyIds

__all__ = ["decode_cursor", "encode_cursor", "item_id", "parse_id", "parse_ids"]

_PREFIX = "i1:"
MAX_SEQ = (1 << 63) - 1
_MAX_CURSOR = 64
_MAX_ID = 19  # digits of MAX_SEQ


def item_id(seq: int) -> str:
    return str(seq)


def parse_id(value: str) -> int | None:
    """The sequence number of an item id, or None when `value` cannot be one (so no item has it)."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= _MAX_ID
        or not value.isascii()
        or not value.isdigit()
    ):
        return None
    seq = int(value)
    return seq if 0 < seq <= MAX_SEQ else None


def parse_ids(values: Iterable[str], limit: int) -> tuple[dict[int, str], list[str]]:
    """({seq: id}, [ids no item can have]) for a request naming `values`; more than `limit` → TooManyIds."""
    if isinstance(values, str):  # a lone string would iterate as characters
        raise InvalidInboxInput("ids", "a list of item ids, or `all`")
    found: dict[int, str] = {}
    bad: list[str] = []
    for count, value in enumerate(values, 1):
        if count > limit:
            # count the rest only up to a bound: the caller may hand us an endless iterable
            raise TooManyIds(count, limit)
        seq = parse_id(value)
        if seq is None:
            bad.append(str(value)[:40])
        else:
            found[seq] = value
    return found, bad


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{seq}".encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> int:
    """The sequence number a cursor stands for; InvalidCursor saying what is wrong otherwise."""
    if not isinstance(cursor, str) or not 0 < len(cursor) <= _MAX_CURSOR:
        raise InvalidCursor(f"must be a string of 1-{_MAX_CURSOR} characters, as returned in next_cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor("not base64url: pass next_cursor back unchanged") from None
    if not raw.startswith(_PREFIX):
        raise InvalidCursor("not an inbox cursor (unknown version); pass next_cursor back unchanged")
    seq = parse_id(raw[len(_PREFIX) :])
    if seq is None:
        raise InvalidCursor("damaged: its position is not a valid item")
    return seq
