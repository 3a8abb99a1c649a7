"""One HTTP/2 connection: an asyncio Protocol that drives `h2.connection.H2Connection` and nothing more.

The protocol (framing, HPACK, flow control, SETTINGS, stream states, CONTINUATION, padding) is h2's; this module
only moves bytes between the socket and h2, turns h2's events into one future per request, and keeps the
bookkeeping the pool needs: stream slots (`capacity`), whether a stream's frames left (`flushed_upto`), when
anything last arrived (PING liveness) and when a stream last finished (stall detection).

Semantics we add on top of h2's events:
- 1xx answers are skipped (h2 reports them as InformationalResponseReceived); at most `max_informational`.
- REFUSED_STREAM, a GOAWAY whose last stream id is below a stream, and a connection lost before the stream's
  frames were written fail that stream with `NotSent`: the server never processed it.
- We advertise SETTINGS_MAX_HEADER_LIST_SIZE; an answer over it (or a body over `max_body`) resets only its own
  stream. h2 would hand the advertised size to the HPACK decoder, which then fails the whole connection, so
  once our SETTINGS are acked the decoder's own bound is raised to `hard_header_list_size` (the HPACK-bomb
  guard that stays connection-fatal) and the advertised one is enforced per stream here.

Deliberate deviation: h2 moves its connection state machine to CLOSED as soon as a GOAWAY arrives
(python-hyper/h2 issue 1181), after which frames for the streams the server still completes (ids <= the last
stream id, RFC 9113 §6.8) raise ProtocolError, and every in-flight request of a graceful shutdown would fail.
Our connection's state machine (h2setup.StateMachine) stays open on a received GOAWAY; `usable` turns False,
so no stream is started on the connection again, and it closes once the remaining streams are done.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, cast

import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes

from .errors import Http2Unsupported, NotSent, ResponseTooLarge, TransportError
from .h2setup import (
    CONFIG,
    PING,
    Connection,
    Headers,
    Limits,
    Response,
    StateMachine,
    Stream,
    header_list_size,
    retrieve,
    status_of,
)
from .hpack_fast import Decoder, Encoder


class H2Protocol(asyncio.Protocol):
    """One connection's streams; `start` opens one, its future resolves to the Response or a TransportError."""

    def __init__(self, authority: str, limits: Limits, on_change: Callable[[H2Protocol], None]) -> None:
        self.loop = asyncio.get_running_loop()
        self.authority = authority
        self.limits = limits
        self.on_change = on_change  # the pool: slots appeared or the connection stopped taking streams
        self.h2 = Connection(config=CONFIG)
        self.h2.decoder = Decoder(limits.hard_header_list_size)
        self.h2.encoder = self.encoder = Encoder()
        self.h2.state_machine = StateMachine()  # see the module docstring
        self.h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: limits.window,
            },
        )
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = self.loop.create_future()  # the server's SETTINGS arrived
        self.ready.add_done_callback(retrieve)  # a setup failure nobody waits for any more is not an error
        self.usable = True  # takes new streams (not after GOAWAY, loss, retirement or used-up ids)
        self.reserved = 0  # slots the pool handed out: streams open or about to be
        self.allowed = 0  # streams at once: the server's MAX_CONCURRENT_STREAMS (from its SETTINGS), our cap
        self.streams: dict[int, Stream] = {}
        self.blocked: list[int] = []  # streams whose body waits for flow-control credit, oldest first
        self.flushed_upto = 0  # highest stream id whose frames were handed to the socket
        self.flush_handle: asyncio.Handle | None = None
        now = self.loop.time()
        self.last_received = now
        self.last_progress = now  # a stream finished, or the connection became ready
        self.ping_sent_at: float | None = None
        self.pings = 0
        self.reason = ""  # why it stopped taking streams, for the errors of what was still on it

    # --- what the pool asks --------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        """Stream slots free for new requests now."""
        if not self.usable or not self.ready.done():
            return 0
        return self.allowed - self.reserved

    def start(self, headers: Headers, body: bytes) -> tuple[int, asyncio.Future[Response]]:
        """Open a stream and queue its frames (written at the end of this loop iteration)."""
        if not self.usable or self.transport is None:
            raise NotSent(f"connection no longer takes streams ({self.reason or 'closed'})")
        stream_id = self.h2.highest_outbound_stream_id + 2 if self.h2.highest_outbound_stream_id else 1
        if (
            stream_id > self.h2.HIGHEST_ALLOWED_STREAM_ID
        ):  # as get_next_available_stream_id, without its log call
            self.retire("stream ids used up")
            raise NotSent("stream ids used up")
        try:
            self.h2.send_headers(stream_id, self.encoder.compact(headers), end_stream=not body)
        except h2.exceptions.TooManyStreamsError:  # the server lowered its limit since the slot was given
            raise NotSent("the server lowered MAX_CONCURRENT_STREAMS") from None
        stream = self.streams[stream_id] = Stream(self.loop.create_future())
        if body:
            try:  # the usual case: one DATA frame, no copy (h2 checks the window and frame size first)
                self.h2.send_data(stream_id, body, end_stream=True)
            except (h2.exceptions.FlowControlError, h2.exceptions.FrameTooLargeError):
                stream.pending = memoryview(body)
                self._send_body(stream_id, stream)
                if stream.pending is not None:
                    self.blocked.append(stream_id)
        if self.flush_handle is None:
            self.flush_handle = self.loop.call_soon(self.flush)
        return stream_id, stream.future

    def cancel(self, stream_id: int) -> bool:
        """The caller gave up (deadline, cancellation): reset the stream; returns whether it had been sent."""
        sent = stream_id <= self.flushed_upto
        if self.streams.pop(stream_id, None) is not None and self.transport is not None:
            with contextlib.suppress(h2.exceptions.H2Error):  # already closed on h2's side
                self.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
            self.flush()
        self._close_if_drained()
        return sent

    def retire(self, reason: str) -> None:
        """Take no new streams; close once the streams on it have finished."""
        if self.usable:
            self.usable = False
            self.reason = reason
        self._close_if_drained()

    def check(self, now: float, ping_after: float, ping_timeout: float) -> None:
        """Liveness: PING a connection silent while streams wait on it; drop it if the PING goes unanswered."""
        if self.transport is None:
            return
        if self.ping_sent_at is not None:
            if now - self.ping_sent_at > ping_timeout:
                self.abort(f"PING unanswered for {ping_timeout:g} s")
            return
        if self.streams and now - self.last_received > ping_after:
            self.pings += 1
            self.ping_sent_at = now
            self.h2.ping(PING.pack(self.pings))
            self.flush()

    def abort(self, reason: str) -> None:
        self.usable = False
        self.reason = reason
        if self.transport is not None:
            self.transport.abort()  # connection_lost fails what is still on it

    # --- writing -------------------------------------------------------------------------------------------
    def flush(self) -> None:
        # Everything h2 produced in this loop iteration goes out in one write.
        self.flush_handle = None
        data = self.h2.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)
            self.flushed_upto = self.h2.highest_outbound_stream_id

    def _send_body(self, stream_id: int, stream: Stream) -> None:
        """Send as much of the pending body as flow control allows."""
        pending = stream.pending
        assert pending is not None
        frame_size = self.h2.max_outbound_frame_size
        while pending:
            size = min(self.h2.local_flow_control_window(stream_id), frame_size, len(pending))
            if size <= 0:
                stream.pending = pending
                return
            chunk, pending = pending[:size], pending[size:]
            self.h2.send_data(stream_id, chunk.tobytes(), end_stream=not pending)
        stream.pending = None

    def _unblock(self) -> None:
        still: list[int] = []
        for stream_id in self.blocked:
            stream = self.streams.get(stream_id)
            if stream is None or stream.pending is None:
                continue
            try:
                self._send_body(stream_id, stream)
            except h2.exceptions.StreamClosedError:  # the server reset it meanwhile
                continue
            if stream.pending is not None:
                still.append(stream_id)
        self.blocked = still

    # --- connection life -----------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(self.limits.window - 65535)  # the connection's, as streams'
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.usable = False
        reason = self.reason or (f"connection lost: {exc}" if exc else "connection closed by the server")
        self.reason = reason
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None
        if not self.ready.done():
            self.ready.set_exception(TransportError(f"{reason} (during HTTP/2 setup)", sent=False))
        for stream_id in list(self.streams):
            if stream_id > self.flushed_upto:
                self._finish(stream_id, NotSent(f"{reason} before the request was written"))
            else:
                self._finish(stream_id, TransportError(reason, sent=True))
        self.on_change(self)

    def _close_if_drained(self) -> None:
        if not self.usable and not self.streams and self.transport is not None:
            self.flush()
            self.transport.close()

    def _finish(self, stream_id: int, outcome: Response | TransportError) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        if not stream.future.done():
            if isinstance(outcome, Response):
                stream.future.set_result(outcome)
            else:
                stream.future.set_exception(outcome)
        if not self.usable and not self.streams:
            self._close_if_drained()

    def _fail_stream(self, stream_id: int, error: TransportError) -> None:
        """Our verdict on one stream (too large, malformed): reset it, keep the connection."""
        with contextlib.suppress(h2.exceptions.H2Error):
            self.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
        self._finish(stream_id, error)

    # --- reading -------------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self.last_received = self.loop.time()
        self.ping_sent_at = None  # anything arriving proves the peer alive, not just a PING ACK
        if not self.ready.done() and data.startswith(b"HTTP/"):
            # h2c prior knowledge to an HTTP/1.x server: it answers "HTTP/1.1 400" or similar.
            self.ready.set_exception(Http2Unsupported(f"not an HTTP/2 server: {data[:40]!r}"))
            self.abort("not an HTTP/2 server")
            return
        if self.flush_handle is not None:
            self.flush()  # before h2 sees a GOAWAY, which clears what it has not handed out yet
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._protocol_error(str(exc))
            return
        for event in events:
            handler = _HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event)
        self.flush()

    def _protocol_error(self, why: str) -> None:
        self.usable = False
        self.reason = f"protocol error: {why}"[:200]
        if not self.ready.done():
            self.ready.set_exception(Http2Unsupported(f"not an HTTP/2 server ({why})"[:200]))
        self.flush()  # h2 queued a GOAWAY
        if self.transport is not None:
            self.transport.close()

    def _on_settings(self, event: h2.events.RemoteSettingsChanged) -> None:
        self.allowed = min(self.h2.remote_settings.max_concurrent_streams, self.limits.max_streams)
        if not self.ready.done():
            self.ready.set_result(None)
            self.last_progress = self.loop.time()
        self.on_change(self)  # MAX_CONCURRENT_STREAMS may have grown: wake waiters
        self._unblock()  # INITIAL_WINDOW_SIZE may have grown

    def _on_response(self, event: h2.events.ResponseReceived) -> None:
        stream_id = event.stream_id or 0
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        headers = cast(Headers, event.headers or [])
        if header_list_size(headers) > self.limits.max_header_list_size:
            size = header_list_size(headers)
            return self._fail_stream(stream_id, ResponseTooLarge(f"response headers of {size} bytes"))
        stream.status = status_of(headers)
        if not stream.status:
            error = TransportError("response without a valid :status", sent=True)
            return self._fail_stream(stream_id, error)
        stream.headers = headers
        return None

    def _on_informational(self, event: h2.events.InformationalResponseReceived) -> None:
        stream = self.streams.get(event.stream_id or 0)
        if stream is not None:
            stream.informational += 1
            if stream.informational > self.limits.max_informational:
                error = TransportError("too many 1xx answers", sent=True)
                self._fail_stream(event.stream_id or 0, error)

    def _on_trailers(self, event: h2.events.TrailersReceived) -> None:
        headers = cast(Headers, event.headers or [])
        if header_list_size(headers) > self.limits.max_header_list_size:
            self._fail_stream(event.stream_id or 0, ResponseTooLarge("response trailers too large"))

    def _on_data(self, event: h2.events.DataReceived) -> None:
        stream_id = event.stream_id or 0
        # Always hand the credit back, also for streams we gave up on: the connection window is shared.
        self.h2.acknowledge_received_data(event.flow_controlled_length or 0, stream_id)
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        data = event.data or b""
        if len(stream.body) + len(data) > self.limits.max_body:
            self._fail_stream(stream_id, ResponseTooLarge(f"response body over {self.limits.max_body} bytes"))
            return
        stream.body += data

    def _on_ended(self, event: h2.events.StreamEnded) -> None:
        stream_id = event.stream_id or 0
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        self.last_progress = self.last_received  # now: set as these bytes arrived
        if not stream.status:
            self._finish(stream_id, TransportError("stream ended without a response", sent=True))
        else:
            self._finish(stream_id, Response(stream.status, stream.headers, bytes(stream.body)))

    def _on_reset(self, event: h2.events.StreamReset) -> None:
        stream_id = event.stream_id or 0
        if stream_id not in self.streams:
            return
        self.last_progress = self.loop.time()
        code = event.error_code
        if code == ErrorCodes.REFUSED_STREAM:
            self._finish(stream_id, NotSent("stream refused by the server (REFUSED_STREAM)"))
        else:
            name = code.name if isinstance(code, ErrorCodes) else str(code)
            self._finish(stream_id, TransportError(f"stream reset by the server ({name})", sent=True))

    def _on_window(self, event: h2.events.WindowUpdated) -> None:
        if self.blocked:
            self._unblock()

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        last = event.last_stream_id or 0
        code = event.error_code
        name = code.name if isinstance(code, ErrorCodes) else str(code)
        self.usable = False
        self.reason = f"GOAWAY ({name})"
        for stream_id in [i for i in self.streams if i > last]:
            self._finish(stream_id, NotSent(f"GOAWAY ({name}) above this stream"))
        self.on_change(self)
        self._close_if_drained()


_HANDLERS: dict[type[Any], Callable[[H2Protocol, Any], None]] = {
    h2.events.RemoteSettingsChanged: H2Protocol._on_settings,
    h2.events.ResponseReceived: H2Protocol._on_response,
    h2.events.InformationalResponseReceived: H2Protocol._on_informational,
    h2.events.TrailersReceived: H2Protocol._on_trailers,
    h2.events.DataReceived: H2Protocol._on_data,
    h2.events.StreamEnded: H2Protocol._on_ended,
    h2.events.StreamReset: H2Protocol._on_reset,
    h2.events.WindowUpdated: H2Protocol._on_window,
    h2.events.ConnectionTerminated: H2Protocol._on_goaway,
    # PingReceived is answered by h2 itself; PingAckReceived needs nothing: any byte clears ping_sent_at.
}
