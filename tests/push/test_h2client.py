"""Our HTTP/2 client against the h2-library server of the sandbox: flow control, HPACK shortcuts, h2c refusal."""

from __future__ import annotations

import asyncio

import hpack
import pytest

from tidings.push.h2client import H2Unsupported, encode_headers
from tidings.push.h2frames import integer, quick_status
from tidings.push.h2pool import Pool
from tidings.sandbox.control import SandboxState
from tidings.sandbox.h2server import Answer, H2Server
from tidings.sandbox.webpush import WebPushSandbox


def test_hpack_integers_and_literals_decode_with_the_hpack_library() -> None:
    assert integer(10, 5, 0) == b"\x0a" and integer(1337, 5, 0) == b"\x1f\x9a\x0a"  # RFC 7541 C.1.1, C.1.2
    block = encode_headers([("apns-topic", "com.example"), ("x-long", "v" * 300)])
    assert hpack.Decoder().decode(block) == [("apns-topic", "com.example"), ("x-long", "v" * 300)]


@pytest.mark.parametrize("status", [200, 201, 204, 404, 410, 500])
def test_quick_status_reads_static_and_literal_status(status: int) -> None:
    encoder = hpack.Encoder()
    encoder.header_table_size = 0
    encoder.encode([])  # consume the size update, as after the first block
    for huffman in (True, False):
        block = encoder.encode([(":status", str(status)), ("location", "/m/1")], huffman=huffman)
        assert quick_status(block) == status


async def echo_server(answer: Answer, received: list[int] | None = None) -> tuple[H2Server, SandboxState]:
    received = [] if received is None else received

    def handle(headers: dict[str, str], body: bytes, connection: int) -> Answer:
        received.append(len(body))
        return answer[0], {**answer[1], "x-body-length": str(len(body))}, answer[2], answer[3]

    state = SandboxState()  # its pause ends early when the test stops the server
    server = H2Server(handle, state.pause, host="127.0.0.1", port=0)
    await server.start()
    return server, state


async def stop(server: H2Server, state: SandboxState) -> None:
    state.stopping.set()
    await server.stop()


async def test_bodies_larger_than_the_flow_control_window_are_sent_as_credit_arrives() -> None:
    received: list[int] = []
    server, state = await echo_server((200, {}, b"ok", 0.0), received)
    pool = Pool(server.url)
    try:
        async with asyncio.timeout(10):
            responses = await asyncio.gather(
                *(pool.request(b"/upload", b"", bytes(200_000 + i), 5.0) for i in range(3))
            )
    finally:
        await pool.aclose()
        await stop(server, state)
    assert sorted(received) == [200_000, 200_001, 200_002]
    assert all(r.status == 200 and r.body == b"ok" for r in responses)


async def test_success_headers_are_skipped_once_the_peer_table_is_empty() -> None:
    server, state = await echo_server((201, {"location": "/message/1"}, b"", 0.0))
    pool = Pool(server.url)
    try:
        first = await pool.request(b"/", b"", b"x", 5.0)
        second = await pool.request(b"/", b"", b"x", 5.0)
        connection = await pool.connection()
    finally:
        await pool.aclose()
        await stop(server, state)
    assert first.status == second.status == 201
    assert connection.settings_acked and connection.decoder.header_table_size == 0
    assert second.headers == [(b":status", b"201")]  # decoded no further than the status


async def test_an_http1_server_is_reported_as_unsupported() -> None:
    async with WebPushSandbox() as sandbox:
        pool = Pool(sandbox.control_url)  # the HTTP/1.1 port
        with pytest.raises(H2Unsupported):
            await pool.request(b"/push/x", b"", b"", 2.0)
        await pool.aclose()


async def test_a_silent_connection_is_abandoned_after_a_timeout() -> None:
    server, state = await echo_server((200, {}, b"", 30.0))  # takes streams, never sends another byte
    pool = Pool(server.url)
    try:
        first = await pool.connection()
        async with asyncio.timeout(2):  # let the handshake finish: the server acks our SETTINGS
            while not first.settings_acked:
                await asyncio.sleep(0.01)
        with pytest.raises(TimeoutError):
            await pool.request(b"/", b"", b"", 0.2)
        assert first.closed
        with pytest.raises(TimeoutError):
            await pool.request(b"/", b"", b"", 0.2)
    finally:
        await pool.aclose()
        await stop(server, state)
    assert pool.connections_opened == 2


async def test_a_cancelled_request_frees_its_stream_at_once() -> None:
    server, state = await echo_server((200, {}, b"", 30.0))
    pool = Pool(server.url)
    try:
        task = asyncio.create_task(pool.request(b"/", b"", b"", 30.0))
        connection = await pool.connection()
        async with asyncio.timeout(2):
            while not connection.streams:
                await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not connection.streams
    finally:
        await pool.aclose()
        await stop(server, state)
