"""HTTP/2 framing and HPACK request encoding, the small parts our client writes itself (see h2client.py).

Requests are encoded as HPACK literals without indexing (RFC 7541 §6.2.2): no dynamic table on our side, so
nothing to keep in step with the peer, at the cost of some bytes per request. Responses are decoded by the
`hpack` library.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

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
