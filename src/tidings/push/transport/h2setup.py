"""How we set up h2 for the push transport, and the values a connection hands around (Response, Limits).

h2 is configured for a client whose request headers are built by our own providers: no outbound validation or
normalisation, bytes in and out; HPACK coding is hpack_fast's. `Connection` is h2's connection without three
costs per request that do no protocol work (see each method; bench/push/README.md has what each saves), and
`StateMachine` keeps a connection open on a received GOAWAY (see connection.py).
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from itertools import chain
from typing import Any

import h2.config
import h2.connection
import h2.exceptions
from h2.connection import ConnectionInputs, ConnectionState
from h2.errors import ErrorCodes
from hyperframe.frame import RstStreamFrame

Headers = list[tuple[bytes, bytes]]

CONFIG = h2.config.H2Configuration(
    client_side=True,
    header_encoding=None,  # bytes in, bytes out: no str round trips per header
    # Our request headers are built by our providers and known to be valid; h2's per-header checks on them
    # were a large share of its CPU per request (bench/push).
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
    # What a server sends is checked where we use it (:status); h2's inbound validation turns one odd header
    # into a ProtocolError that ends the whole connection.
    validate_inbound_headers=False,
    normalize_inbound_headers=False,
)
PING = struct.Struct("!Q")


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds of one connection; every buffer it keeps has one."""

    max_streams: int = 1000  # our cap on concurrent streams, below the server's MAX_CONCURRENT_STREAMS
    max_header_list_size: int = 64 * 1024  # advertised; a larger answer fails its own stream only
    hard_header_list_size: int = 1024 * 1024  # HPACK-bomb guard: above it the connection fails
    max_body: int = 1024 * 1024  # a larger answer body fails its own stream
    window: int = 1024 * 1024  # our receive window, per stream and for the connection
    max_informational: int = 16  # 1xx answers tolerated before the final one


@dataclass(slots=True)
class Response:
    status: int
    headers: Headers
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        """The first value of a (lower-case) header, or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


class Stream:
    __slots__ = ("body", "future", "headers", "informational", "pending", "status")

    def __init__(self, future: asyncio.Future[Response]) -> None:
        self.future = future
        self.status = 0
        self.headers: Headers = []
        self.body = bytearray()
        self.informational = 0
        self.pending: memoryview | None = None  # request body still waiting for flow-control credit


class Connection(h2.connection.H2Connection):
    """h2's connection, counting its open streams cheaply. h2 counts them before every new stream by scanning
    every stream it holds (which is also where it forgets closed ones), a cost that grew with the requests in
    flight. A client's streams are all its own, so their number is an upper bound of the open ones: that is
    what `open_outbound_streams` gives here, and h2's exact scan runs only when the bound reaches the server's
    limit (so the limit holds exactly) or when enough streams may have closed since the last scan (amortised
    O(1) per stream; closed streams still leave h2's table)."""

    _sweep_at = 64

    @property
    def open_outbound_streams(self) -> int:
        count = len(self.streams)
        if count >= self._sweep_at or count >= self.remote_settings.max_concurrent_streams:
            count = self._open_streams(int(self.config.client_side))
            self._sweep_at = 2 * len(self.streams) + 64
        return count

    def _prepare_for_sending(self, frames: list[Any]) -> None:
        # h2's, without its assertion over every frame (a generator per call, three calls per request) that
        # its own HEADERS slicing and our DATA chunks (connection._send_body) respect the frame size.
        if frames:
            self._data_to_send += b"".join([frame.serialize() for frame in frames])

    def _receive_frame(self, frame: Any) -> list[Any]:
        # h2's, without building repr(frame) for its no-op trace log on every frame received.
        events: list[Any]
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except h2.exceptions.StreamClosedError as e:
            if not self._stream_is_closed_by_reset(e.stream_id):
                raise
            reset = RstStreamFrame(e.stream_id)
            reset.error_code = e.error_code
            self._prepare_for_sending([reset])
            events = e._events
        except h2.exceptions.StreamIDTooLowError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                reset = RstStreamFrame(e.stream_id)
                reset.error_code = ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([reset])
                events = []
            elif self._stream_is_closed_by_end(e.stream_id):
                raise h2.exceptions.StreamClosedError(e.stream_id) from e
            else:
                raise
        else:
            self._prepare_for_sending(frames)
        return events


class StateMachine(h2.connection.H2ConnectionStateMachine):
    """h2's connection state machine, except that a GOAWAY received leaves it open (see connection.py): the
    streams at or below its last stream id still finish. Done here, inside h2's own processing, because frames
    right behind the GOAWAY in the same read would otherwise already be refused. In h2's own transition table
    (a GOAWAY received keeps the state), so that every other input costs what it costs in h2."""

    _transitions = {  # noqa: RUF012 (h2 declares it as it is)
        **h2.connection.H2ConnectionStateMachine._transitions,
        **{
            (state, ConnectionInputs.RECV_GOAWAY): (None, state)
            for state in ConnectionState
            if state is not ConnectionState.CLOSED
        },
    }


def retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def header_list_size(headers: Headers) -> int:
    return 32 * len(headers) + sum(map(len, chain.from_iterable(headers)))  # RFC 9113 §6.5.2


def status_of(headers: Headers) -> int:
    for name, value in headers:
        if name == b":status":
            return int(value) if value.isdigit() and len(value) == 3 else 0
    return 0
