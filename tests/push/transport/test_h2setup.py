"""h2setup.Connection: h2's connection with a cheap count of open streams (an upper bound, exact at the server's
limit), which must still enforce MAX_CONCURRENT_STREAMS exactly and still forget closed streams. Driven against
an h2 server in memory."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import pytest

from tidings.push.transport.h2setup import CONFIG, Connection

REQUEST = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"/")]


def _pair(limit: int) -> tuple[Connection, h2.connection.H2Connection]:
    client = Connection(config=CONFIG)
    server = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
    server.local_settings = h2.settings.Settings(
        client=False, initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limit}
    )
    client.initiate_connection()
    server.initiate_connection()
    _exchange(client, server)
    return client, server


def _exchange(client: Connection, server: h2.connection.H2Connection) -> list[h2.events.Event]:
    events: list[h2.events.Event] = []
    for _ in range(3):  # SETTINGS and their ACKs need a round trip or two
        events += server.receive_data(client.data_to_send())
        client.receive_data(server.data_to_send())
    return events


def _open(client: Connection) -> int:
    stream_id = client.get_next_available_stream_id()
    client.send_headers(stream_id, REQUEST, end_stream=True)
    return stream_id


def _answer(server: h2.connection.H2Connection, stream_id: int) -> None:
    server.send_headers(stream_id, [(b":status", b"200")], end_stream=True)


@pytest.mark.parametrize("limit", [1, 3, 100])
def test_the_servers_limit_holds_and_frees_as_streams_close(limit: int) -> None:
    client, server = _pair(limit)
    opened = [_open(client) for _ in range(limit)]
    with pytest.raises(h2.exceptions.TooManyStreamsError):
        _open(client)
    _exchange(client, server)
    _answer(server, opened[0])
    _exchange(client, server)
    _open(client)  # the closed stream freed a slot
    with pytest.raises(h2.exceptions.TooManyStreamsError):
        _open(client)
    assert client.open_outbound_streams == limit  # at the limit, the count is exact


def test_a_reset_stream_frees_its_slot() -> None:
    client, _server = _pair(2)
    first, _ = _open(client), _open(client)
    client.reset_stream(first)
    _open(client)
    with pytest.raises(h2.exceptions.TooManyStreamsError):
        _open(client)


def test_closed_streams_are_forgotten() -> None:
    client, server = _pair(1000)
    for _ in range(20):
        batch = [_open(client) for _ in range(50)]
        _exchange(client, server)
        for stream_id in batch:
            _answer(server, stream_id)
        _exchange(client, server)
    assert client._open_streams(1) == 0  # h2's exact count (its scan)
    assert len(client.streams) <= 64 + 50  # swept now and then, not kept for ever
    assert client.highest_outbound_stream_id == 1999


@pytest.mark.parametrize("forgotten", [False, True])
def test_an_answer_to_a_stream_we_reset_is_dropped_not_fatal(forgotten: bool) -> None:
    """A deadline resets a stream the server is still answering: its late frames must not end the connection
    (h2 answers them with RST_STREAM), whether h2 still holds the stream or has swept it away already."""
    client, server = _pair(100)
    late = _open(client)
    _exchange(client, server)
    client.reset_stream(late)
    if forgotten:
        client._open_streams(1)  # h2's sweep: the stream is now only in its record of closed streams
    server.send_headers(late, [(b":status", b"200")])
    server.send_data(late, b"too late", end_stream=True)
    assert client.receive_data(server.data_to_send()) == []
    assert b"\x03\x00\x00\x00\x00" in client.data_to_send()  # RST_STREAM (type 3), no flags, for the frames
    fine = _open(client)
    events = server.receive_data(client.data_to_send())
    assert any(isinstance(e, h2.events.RequestReceived) and e.stream_id == fine for e in events)
