"""Huffman decoding of HPACK string literals (RFC 7541 5.2, Appendix B), a byte at a time.

hpack walks the code half a byte at a time; here a table built on first use (~20 ms, ~1.8 MB) gives, for each
state and input byte, the next state and the bytes completed, so decoding is one lookup per byte. APNs answers
carry two Huffman-coded ids that differ every time; this is most of what decoding an answer costs.
"""

from __future__ import annotations

from hpack.exceptions import HPACKDecodingError
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

# A state is a node of the code tree (RFC 7541 Appendix B) between symbols, numbered 0 (the root) to 255.
# For state s and input byte b, nexts[s << 8 | b] is the state after b (shifted left by 8, ready for the next
# index; DEAD after an EOS symbol, and DEAD stays DEAD) and emits[s << 8 | b] the bytes b completed. A string
# is valid if it ends in an accepting state: the root or a run of fewer than 8 one-bits (the padding, 5.2).

DEAD = 256
_TABLES: list[tuple[list[int], list[bytes], frozenset[int]]] = []


def _tree() -> list[list[int]]:
    """The code tree's internal nodes, root first; a child >= 0 is a node, ~symbol a leaf."""
    children: list[list[int]] = [[-1, -1]]  # internal nodes; a child >= 0 is a node, ~symbol a leaf
    for symbol in range(257):
        code, length = REQUEST_CODES[symbol], REQUEST_CODES_LENGTH[symbol]
        node = 0
        for shift in range(length - 1, 0, -1):
            bit = (code >> shift) & 1
            if children[node][bit] == -1:
                children[node][bit] = len(children)
                children.append([-1, -1])
            node = children[node][bit]
        children[node][code & 1] = ~symbol
    assert len(children) == DEAD
    return children


def _build() -> tuple[list[int], list[bytes], frozenset[int]]:
    children = _tree()
    accepting = {0}
    node = 0
    for _ in range(7):
        node = children[node][1]
        accepting.add(node)
    # Half a byte first (16 per state), then whole bytes from two halves.
    nibble: list[tuple[int, bytes]] = []
    for state in range(len(children)):
        for half in range(16):
            node, emitted = state, bytearray()
            for shift in (3, 2, 1, 0):
                child = children[node][(half >> shift) & 1]
                if child >= 0:
                    node = child
                elif ~child == 256:  # EOS inside a string is an error (5.2)
                    node = DEAD
                    break
                else:
                    emitted.append(~child)
                    node = 0
            nibble.append((node, bytes(emitted)))
    nibble += [(DEAD, b"")] * 16
    shared: dict[bytes, bytes] = {}  # one object per distinct value: the tables hold 65,792 entries each
    shifted = [node << 8 for node in range(DEAD + 1)]
    nexts: list[int] = []
    emits: list[bytes] = []
    for state in range(len(children) + 1):
        for high in range(16):
            middle, first = nibble[state * 16 + high]
            for low in range(16):
                node, second = nibble[middle * 16 + low]
                both = first + second
                nexts.append(shifted[node])
                emits.append(shared.setdefault(both, both))
    return nexts, emits, frozenset(state << 8 for state in accepting)


def huffman_decode(data: bytes) -> bytes:
    if not _TABLES:
        _TABLES.append(_build())
    nexts, emits, accepting = _TABLES[0]
    state = 0
    out: list[bytes] = []
    for byte in data:
        index = state | byte
        out.append(emits[index])
        state = nexts[index]
    if state not in accepting:
        raise HPACKDecodingError("Invalid Huffman string: bad padding or an EOS symbol")
    return b"".join(out)
