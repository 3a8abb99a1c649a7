"""HPACK for the push transport: hpack's tables and rules, without most of its per-header cost.

Both sides keep `hpack`'s HeaderTable (the static table, the dynamic table and its eviction rules); what changes
is how a header block is turned into bytes and back, which was a quarter of the sender's CPU per APNs push:

- Encoder: a request repeats most of its headers (method, scheme, authority, topic, priority, the provider
  token), and once they are in the dynamic table each is a one- or two-byte index. Those encodings are cached
  and reused while the table is unchanged (any insertion, eviction or resize clears the cache: indices shift).
  Headers marked never-indexed (`transport.volatile`: :path, apns-id) are written as never-indexed literals,
  which leave the table alone, so the cache survives them. `compact` hands h2 each run of cached headers as
  one pre-encoded item, so h2's per-header work is done per run. No Huffman coding on send (pure Python).
- Decoder: one pass over the block without hpack's per-field objects and log calls, and Huffman decoding a
  byte at a time (huffman.py); answers carry Huffman-coded ids (APNs: apns-id, apns-unique-id) that differ
  every time, so nothing can be cached there.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import hpack
from hpack import HeaderTuple, NeverIndexedHeaderTuple
from hpack.exceptions import (
    HPACKDecodingError,
    InvalidTableIndex,
    InvalidTableSizeError,
    OversizedHeaderListError,
)
from hpack.hpack import encode_integer
from hpack.table import HeaderTable

from .huffman import huffman_decode

STATIC = HeaderTable.STATIC_TABLE
STATIC_LENGTH = len(STATIC)
MAX_INTEGER_BYTES = 8  # continuation bytes of one HPACK integer: 2**56 is past any size we accept


class Table(HeaderTable):
    """hpack's table, counting insertions: an index encoded before one may point elsewhere after it."""

    def __init__(self) -> None:
        super().__init__()
        self.changes = 0

    def add(self, name: bytes, value: bytes) -> None:
        self.changes += 1
        super().add(name, value)


_SHORT = [bytes((n,)) for n in range(0x7F)]  # a string length below 127: one byte, Huffman bit clear


def _integer(value: int, prefix_bits: int, flags: int) -> bytes:
    if value < (1 << prefix_bits) - 1:
        return bytes((flags | value,))
    encoded = encode_integer(value, prefix_bits)
    encoded[0] |= flags
    return bytes(encoded)


class DecoderTable(HeaderTable):
    """hpack's table with hpack's eviction rule (4.4), in one call and without a log call per evicted entry."""

    def add(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + 32
        entries = self.dynamic_entries
        if size > self._maxsize:
            entries.clear()
            self._current_size = 0
            return
        entries.appendleft((name, value))
        current = self._current_size + size
        while current > self._maxsize:
            old_name, old_value = entries.pop()
            current -= len(old_name) + len(old_value) + 32
        self._current_size = current


class Encoded(HeaderTuple):
    """Headers already HPACK-encoded (Encoder.compact): one item for h2 to hand through, written verbatim."""

    __slots__ = ()


class Run(tuple[tuple[bytes, bytes], ...]):
    """Headers that go out together again and again, as this same object (transport.repeated): compact() finds
    their encoding with one lookup while the table stands, instead of one per header."""

    __slots__ = ()


def flatten(headers: Iterable[Any]) -> list[Any]:
    """The headers with every Run replaced by its own headers."""
    out: list[Any] = []
    for header in headers:
        if header.__class__ is Run:
            out += header
        else:
            out.append(header)
    return out


class Encoder(hpack.Encoder):
    """HPACK encoding with the encoding of each indexed header reused while the dynamic table is unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.header_table = Table()
        self.cache: dict[tuple[bytes, bytes], bytes] = {}  # header -> its index, as encoded
        self.runs: dict[Run, bytes] = {}  # Run -> the indices of its headers, as encoded
        self.never_prefix: dict[bytes, bytes] = {}  # name -> the start of a never-indexed literal

    @property
    def header_table_size(self) -> int:
        return self.header_table.maxsize

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self.cache.clear()  # a smaller table may have evicted what the cache points at
        self.runs.clear()
        table = self.header_table
        pending, old = table.resized, table.maxsize
        table.maxsize = value  # sets `resized` to whether this call changed it, forgetting an unsent change
        if value != old:
            self.table_size_changes.append(value)
        table.resized = pending or value != old

    def encode(self, headers: Iterable[Any], huffman: bool = False) -> bytes:
        table = self.header_table
        assert isinstance(table, Table)
        cache = self.cache
        out: list[bytes] = []
        if table.resized:  # the size update goes first, as in hpack
            out.append(self._encode_table_size_change())
            table.resized = False
            cache.clear()
            self.runs.clear()
        for header in headers:
            name, value = header[0], header[1]
            if type(header) is Encoded:
                out.append(value)
                continue
            if isinstance(header, HeaderTuple) and not header.indexable:
                prefix = self.never_prefix.get(name) or self._never_indexed_prefix(name)
                out += (prefix, _integer(len(value), 7, 0), value)
                continue
            key = (name, value)
            field = cache.get(key)
            if field is None:
                changes = table.changes
                field = self.add(key, False, False)
                if table.changes == changes:  # found in the table: an index, valid until the table changes
                    cache[key] = field
                else:
                    cache.clear()
                    self.runs.clear()
            out.append(field)
        return b"".join(out)

    def compact(self, headers: list[Any]) -> list[Any]:
        """`headers`, each run of headers whose encodings are known now given as one pre-encoded item, which h2
        passes through as one header (its per-header work, a few µs per request, happens once per run):
        headers cached as indices, and never-indexed ones, whose encoding does not depend on the table.

        Changes nothing: a header not cached yet is left for encode(), which indexes it when h2 sends the
        block (until then nothing else encodes, so the cached indices are still right), and so is everything
        after it, since that insertion shifts the indices. :method stays visible (h2 reads it: a HEAD answer
        has no body)."""
        if self.header_table.resized:
            return flatten(headers)
        cache, never_prefix = self.cache, self.never_prefix
        out: list[Any] = []
        run: list[bytes] = []
        for position, header in enumerate(headers):
            kind = header.__class__
            if kind is NeverIndexedHeaderTuple:
                name, value = header
                prefix = never_prefix.get(name) or self._never_indexed_prefix(name)
                length = len(value)
                run += (prefix, _SHORT[length] if length < 0x7F else _integer(length, 7, 0), value)
                continue
            if kind is Run:
                field = self.runs.get(header)
                if field is None:
                    field = self._run(header)
                visible = False
            else:
                field = cache.get(header)
                visible = header[0] == b":method"
            if field is not None and not visible:
                run.append(field)
                continue
            if run:
                out.append(tuple.__new__(Encoded, (b"", b"".join(run))))
                run = []
            if field is None:  # encode() will index it, shifting the indices cached after it
                return out + flatten(headers[position:])
            out.append(header)
        if run:
            out.append(tuple.__new__(Encoded, (b"", b"".join(run))))
        return out

    def _run(self, run: Run) -> bytes | None:
        """A Run's encoding from the cached indices of its headers; None while one of them is not cached."""
        fields = [self.cache.get(header) for header in run]
        if None in fields:
            return None
        if len(self.runs) >= 64:  # each event's headers make a run; the table keeps changing with them anyway
            self.runs.clear()
        block = self.runs[run] = b"".join(fields)  # type: ignore[arg-type]
        return block

    def _never_indexed_prefix(self, name: bytes) -> bytes:
        """Representation 6.2.3 up to the value: the name by static index when it has one, else literal."""
        static = HeaderTable.STATIC_TABLE_MAPPING.get(name)
        literal = b"\x10" + _integer(len(name), 7, 0) + name
        prefix = _integer(static[0], 4, 0x10) if static is not None else literal
        self.never_prefix[name] = prefix
        return prefix


class Decoder(hpack.Decoder):
    """HPACK decoding in one pass, with a fixed bound on the decoded header list.

    The bound: h2 sets the decoder's bound to our advertised size when our SETTINGS are acked, which would make
    an oversized answer fatal to the connection (see connection.py); this one keeps the bound it was given."""

    def __init__(self, bound: int) -> None:
        self.bound = bound
        super().__init__()
        self.header_table = DecoderTable()

    @property
    def max_header_list_size(self) -> int:
        return self.bound

    @max_header_list_size.setter
    def max_header_list_size(self, value: int) -> None:
        pass

    def decode(self, data: bytes, raw: bool = False) -> list[Any]:
        if not raw:  # h2 always asks for bytes; anyone else gets hpack's own
            return list(super().decode(data, raw))
        if isinstance(data, memoryview):
            data = data.tobytes()
        table = self.header_table
        headers: list[Any] = []
        size, i, end = 0, 0, len(data)
        while i < end:
            first = data[i]
            if 0x80 < first <= 0x80 + STATIC_LENGTH:  # 6.1, from the static table (:status 200): the usual
                header = STATIC[first - 0x81]
                i += 1
            elif first & 0xE0 == 0x20:  # 6.3 dynamic table size update
                if headers:
                    raise HPACKDecodingError("Table size update not at the start of the block")
                new_size, i = _integer_at(data, i, 0x1F)
                if new_size > self.max_allowed_table_size:
                    raise InvalidTableSizeError("Encoder exceeded max allowable table size")
                table.maxsize = new_size
                continue
            else:
                header, i = _field(data, i, table)
            headers.append(header)
            size += len(header[0]) + len(header[1]) + 32
            if size > self.bound:
                raise OversizedHeaderListError(f"A header list larger than {self.bound} has been received")
        if table.maxsize > self.max_allowed_table_size:  # hpack's check: a shrunk table must be shrunk
            raise InvalidTableSizeError("Encoder did not shrink table size to within the max")
        return headers


def _field(data: bytes, i: int, table: HeaderTable) -> tuple[Any, int]:
    """The field starting at `i` (6.1 indexed, 6.2 literal) and the position after it."""
    first = data[i]
    if first & 0x80:
        index, i = _integer_at(data, i, 0x7F)
        return _entry(index, table), i
    indexing = first & 0x40
    index, i = _integer_at(data, i, 0x3F if indexing else 0x0F)
    if index:
        name = _entry(index, table)[0]
    else:
        name, i = _string(data, i)
    length = data[i] & 0x7F if i < len(data) else 0x7F
    if length < 0x7F and i + 1 + length <= len(data):  # the usual value: short, whole (else _string says why)
        start, i = i + 1, i + 1 + length
        value = huffman_decode(data[start:i]) if data[start - 1] & 0x80 else data[start:i]
    else:
        value, i = _string(data, i)
    if indexing:
        table.add(name, value)
    elif first & 0x10:  # never indexed: an intermediary passes it on as such
        return NeverIndexedHeaderTuple(name, value), i
    return (name, value), i


def _entry(index: int, table: HeaderTable) -> tuple[bytes, bytes]:
    if 0 < index <= STATIC_LENGTH:
        return STATIC[index - 1]
    position = index - STATIC_LENGTH - 1
    dynamic = table.dynamic_entries
    if 0 <= position < len(dynamic):
        return dynamic[position]
    raise InvalidTableIndex(f"Invalid table index {index}")


def _integer_at(data: bytes, i: int, mask: int) -> tuple[int, int]:
    """The integer (5.1) whose prefix is the bits `mask` of data[i]; returns it and the position after it."""
    number = data[i] & mask
    i += 1
    if number < mask:
        return number, i
    shift = 0
    for _ in range(MAX_INTEGER_BYTES):
        if i >= len(data):
            raise HPACKDecodingError("Truncated HPACK integer")
        byte = data[i]
        i += 1
        number += (byte & 0x7F) << shift
        if byte < 0x80:
            return number, i
        shift += 7
    raise HPACKDecodingError("HPACK integer representation too long")


def _string(data: bytes, i: int) -> tuple[bytes, int]:
    """A string literal (5.2) at `i`; returns it (Huffman-decoded if so coded) and the position after it."""
    if i >= len(data):
        raise HPACKDecodingError("Truncated header block")
    huffman = data[i] & 0x80
    length, i = _integer_at(data, i, 0x7F)
    stop = i + length
    if stop > len(data):
        raise HPACKDecodingError("Truncated header block")
    raw = data[i:stop]
    return (huffman_decode(raw) if huffman else raw), stop
