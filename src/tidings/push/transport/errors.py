"""What can go wrong on the way to a push service, as errors of ours (`tidings.errors.TidingsError`).

TidingsError
└── TransportError        no usable answer; `sent` says whether the request may have reached the server
    ├── TransportTimeout  the request's deadline passed (waiting for a connection, a stream slot or the answer)
    ├── ResponseTooLarge  the answer's headers or body exceeded our limits: only that stream failed
    └── Http2Unsupported  the origin does not speak HTTP/2 (ALPN said no, or it answered in HTTP/1.x)

`sent=False` means the server certainly did not process the request (it never left, REFUSED_STREAM, above a
GOAWAY's last stream id): the transport resends those itself until the deadline, so when one reaches a caller
it is a timeout or a connection that could not be made, and no attempt was spent.
"""

from __future__ import annotations

from ...errors import TidingsError


class TransportError(TidingsError):
    """A request that got no usable answer."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class TransportTimeout(TransportError):
    """The deadline passed; the message says what was being waited for."""


class ResponseTooLarge(TransportError):
    """Headers over the advertised SETTINGS_MAX_HEADER_LIST_SIZE or a body over the limit (stream reset)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, sent=True)


class Http2Unsupported(TransportError):
    """The origin answered, but not in HTTP/2; with HTTP/1.1 allowed the transport falls back to it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, sent=False)


class NotSent(TransportError):
    """Internal: this try never reached the server (refused stream, GOAWAY above it, closed before sending)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, sent=False)
