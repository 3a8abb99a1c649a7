"""HTTP/2 framing and HPACK request encoding, the small parts our client writes itself (see h2client.py).

Requests are encoded as HPACK literals without indexing (RFC 7541 §6.2.2): no dynamic table on our side, so
nothing to keep in step with the peer, at the cost of some bytes per request. Responses are decoded by the
`hpack` library.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from hpack.huffman_table import decode_huffman

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0x0,
    0x1,
    0x3,
    0x4,
    0x5,
    0x6,
    0x7,
    0x8,
    0x9,
)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
REFUSED_STREAM, CANCEL = 0x7, 0x8
OUR_WINDOW = 1 << 24  # we only receive small responses: one generous window, replenished at half
MAX_STREAM_ID = (1 << 31) - 1
FRAME = struct.Struct("!BHBBL")  # 24-bit length as (high byte, low 16 bits), type, flags, stream id


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    size = len(payload)
    return FRAME.pack(size >> 16, size & 0xFFFF, kind, flags, stream_id) + payload


def integer(value: int, prefix_bits: int, first: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out, value = bytearray((first | limit,)), value - limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def string(value: bytes) -> bytes:
    return integer(len(value), 7, 0) + value


def literal(name: bytes, value: bytes) -> bytes:
    """HPACK literal header field without indexing, new name (RFC 7541 §6.2.2)."""
    return b"\x00" + string(name) + string(value)


def encode_headers(pairs: Iterable[tuple[str, str]]) -> bytes:
    return b"".join(literal(name.lower().encode(), value.encode()) for name, value in pairs)


STATIC_STATUS = {0x88: 200, 0x89: 204, 0x8A: 206, 0x8B: 304, 0x8C: 400, 0x8D: 404, 0x8E: 500}


def quick_status(block: bytes) -> int | None:
    """`:status` when it leads the block as a static-table index or a literal with name index 8, else None.

    Only valid once the peer's dynamic table is empty and stays so (our SETTINGS_HEADER_TABLE_SIZE = 0 acked):
    then a block can be skipped without decoding it, which saves the pure-Python Huffman decoding of headers
    a success does not need (apns-id, Location...).
    """
    if not block:
        return None
    first = block[0]
    if first in STATIC_STATUS:
        return STATIC_STATUS[first]
    # A literal with name index 8 (:status): without indexing, never indexed, or with incremental indexing
    # (harmless when the table size is 0: the entry is evicted at once).
    if first in (0x08, 0x18, 0x48) and len(block) >= 2:
        size = block[1] & 0x7F
        raw = block[2 : 2 + size]
        value = decode_huffman(raw) if block[1] & 0x80 else raw
        return int(value) if value.isdigit() else None
    return None
