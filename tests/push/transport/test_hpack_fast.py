"""The transport's HPACK coder against hpack's, the reference it must agree with byte for byte in meaning.

Encoder: whatever it writes, hpack's decoder reads back as the headers given, and both ends' dynamic tables stay
equal, across table-size changes and headers that come and go. Decoder: whatever hpack's encoder writes (Huffman
or not, indexed, never-indexed, size updates), it reads as hpack does. Malformed blocks fail as in hpack.
(nghttpd and hypercorn decode what the encoder writes in test_transport_peers.py.)
"""

from __future__ import annotations

import os

import hpack
import pytest
from hpack import HeaderTuple, NeverIndexedHeaderTuple
from hpack.exceptions import HPACKDecodingError, HPACKError, InvalidTableIndex, OversizedHeaderListError
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.push.transport.hpack_fast import Decoder, Encoder, Run, flatten

NAMES = [b":path", b"apns-id", b"authorization", b"apns-topic", b"content-type", b"x-long-" + b"n" * 130]
values = st.binary(min_size=0, max_size=200)
header = st.tuples(st.sampled_from(NAMES), st.sampled_from([b"a", b"b", b"same"]) | values, st.booleans())
block = st.lists(header, max_size=12)
step = st.one_of(block, st.integers(min_value=0, max_value=6000))  # a header block, or a table-size change


def _as_tuples(headers: list[tuple[bytes, bytes, bool]]) -> list[HeaderTuple]:
    return [NeverIndexedHeaderTuple(n, v) if never else HeaderTuple(n, v) for n, v, never in headers]


@settings(max_examples=300, deadline=None)
@given(st.lists(step, min_size=1, max_size=30))
def test_what_the_encoder_writes_hpack_reads_back(steps: list[list[tuple[bytes, bytes, bool]] | int]) -> None:
    ours, reference = Encoder(), hpack.Decoder(max_header_list_size=1 << 30)
    for item in steps:
        if isinstance(item, int):
            ours.header_table_size = item  # as h2 does on the server's SETTINGS_HEADER_TABLE_SIZE
            reference.max_allowed_table_size = max(reference.max_allowed_table_size, item)
            continue
        headers = _as_tuples(item)
        indexable = [h for h in headers if h.indexable]
        grouped = [Run(indexable[: len(indexable) // 2]), *headers] if indexable else headers  # some in a Run
        headers = flatten(grouped)
        compacted = ours.compact(grouped)  # as the connection hands headers to h2
        assert not any(isinstance(h, Run) for h in compacted)
        decoded = reference.decode(ours.encode(compacted), raw=True)
        assert [tuple(h) for h in decoded] == [tuple(h) for h in headers]
        assert list(reference.header_table.dynamic_entries) == list(ours.header_table.dynamic_entries)


def test_a_table_size_set_twice_is_still_sent() -> None:
    """hpack's own encoder forgets a pending size change when the same size is set again (h2 sets it on every
    SETTINGS frame that names it): its decoder then keeps the old size."""
    encoder, decoder = Encoder(), hpack.Decoder()
    encoder.header_table_size = 100
    encoder.header_table_size = 100
    decoder.decode(encoder.encode([(b":path", b"/a")]), raw=True)
    assert decoder.header_table.maxsize == 100


def test_repeated_headers_become_cached_indices_and_volatile_ones_leave_the_table_alone() -> None:
    encoder = Encoder()
    constant = [(b":method", b"POST"), (b"authorization", b"bearer " + b"t" * 150), (b"apns-topic", b"com.x")]
    first = encoder.encode([*constant, NeverIndexedHeaderTuple(b"apns-id", b"1")])
    table = list(encoder.header_table.dynamic_entries)
    second = encoder.encode([*constant, NeverIndexedHeaderTuple(b"apns-id", b"2")])
    assert len(second) < 20 < len(first)  # three indices and one short literal, not the token again
    assert list(encoder.header_table.dynamic_entries) == table
    third = encoder.encode([*constant, NeverIndexedHeaderTuple(b"apns-id", b"3")])
    assert third[:-1] == second[:-1]  # the cached part is the same bytes
    compacted = encoder.compact([*constant, NeverIndexedHeaderTuple(b"apns-id", b"4")])
    assert len(compacted) == 2  # :method stays visible to h2, the rest is one pre-encoded item
    assert encoder.encode(compacted)[:-1] == second[:-1]
    run = Run(constant[1:])  # the same headers as one object: one lookup, the same bytes
    grouped = encoder.compact([constant[0], run, NeverIndexedHeaderTuple(b"apns-id", b"4")])
    assert encoder.encode(grouped) == encoder.encode(compacted)
    assert list(encoder.runs) == [run]
    decoder = hpack.Decoder()
    assert decoder.decode(first, raw=True)[1] == constant[1]
    assert decoder.decode(second, raw=True)[3] == (b"apns-id", b"2")


@settings(max_examples=300, deadline=None)
@given(st.lists(step, min_size=1, max_size=30), st.booleans())
def test_what_hpack_writes_the_decoder_reads(
    steps: list[list[tuple[bytes, bytes, bool]] | int], huff: bool
) -> None:
    reference, ours, check = hpack.Encoder(), Decoder(1 << 30), hpack.Decoder(1 << 30)
    for item in steps:
        if isinstance(item, int):
            if item == reference.header_table_size:
                continue  # hpack's encoder would forget a pending change (see the test above)
            reference.header_table_size = item
            ours.max_allowed_table_size = check.max_allowed_table_size = max(
                ours.max_allowed_table_size, item
            )
            continue
        encoded = reference.encode(_as_tuples(item), huffman=huff)
        decoded, expected = ours.decode(encoded, raw=True), check.decode(encoded, raw=True)
        assert [tuple(h) for h in decoded] == [tuple(h) for h in expected]
        assert [h.indexable for h in expected] == [
            not isinstance(h, NeverIndexedHeaderTuple) for h in decoded
        ]
        assert list(check.header_table.dynamic_entries) == list(ours.header_table.dynamic_entries)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x80", InvalidTableIndex),  # index 0
        (b"\xbf", InvalidTableIndex),  # index 63: an empty dynamic table
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", HPACKDecodingError),  # an endless integer
        (b"\xff\x80", HPACKDecodingError),  # truncated integer
        (b"\x40\x05ab", HPACKDecodingError),  # name shorter than its length
        (b"\x04\x05/ab", HPACKDecodingError),  # value shorter than its length
        (b"\x82\x3f\xe1\x1f", HPACKDecodingError),  # a size update after a field
        (b"\x3f\xe1\x7f", HPACKError),  # a size update above the allowed size
    ],
)
def test_malformed_blocks_fail(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        Decoder(1 << 20).decode(data, raw=True)
    with pytest.raises(HPACKError):  # hpack agrees that it is malformed
        hpack.Decoder().decode(data, raw=True)


def test_the_bound_is_fixed_and_counts_decoded_sizes() -> None:
    decoder = Decoder(100)
    decoder.max_header_list_size = 10  # what h2 does on our SETTINGS ACK: ignored
    block = hpack.Encoder().encode([(b"x-a", os.urandom(30).hex().encode())], huffman=True)
    assert decoder.decode(block, raw=True)[0][0] == b"x-a"  # 3 + 60 + 32 = 95 bytes
    with pytest.raises(OversizedHeaderListError):
        Decoder(94).decode(block, raw=True)
