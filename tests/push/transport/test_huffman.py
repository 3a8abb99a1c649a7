"""Huffman decoding (huffman.py) against hpack's: the same strings accepted, read the same, the rest refused."""

from __future__ import annotations

import pytest
from hpack.exceptions import HPACKDecodingError
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.huffman_table import decode_huffman
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.push.transport.huffman import huffman_decode

HUFFMAN = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_huffman_decoding_matches_hpack(data: bytes) -> None:
    assert huffman_decode(HUFFMAN.encode(data)) == data
    try:  # arbitrary bytes: both accept the same strings and read them the same
        expected: bytes | None = decode_huffman(data)
    except HPACKDecodingError:
        expected = None
    if expected is None:
        with pytest.raises(HPACKDecodingError):
            huffman_decode(data)
    else:
        assert huffman_decode(data) == expected


def test_bad_huffman_padding_and_eos_are_errors() -> None:
    encoded = HUFFMAN.encode(b"a")  # 'a' is 5 bits, padded with three 1-bits
    assert huffman_decode(encoded) == b"a"
    with pytest.raises(HPACKDecodingError):
        huffman_decode(bytes([encoded[0] & 0xFE]))  # padding must be ones
    with pytest.raises(HPACKDecodingError):
        huffman_decode(encoded + b"\xff")  # padding longer than 7 bits
    with pytest.raises(HPACKDecodingError):
        huffman_decode(b"\xff\xff\xff\xff")  # the 30-bit EOS symbol
