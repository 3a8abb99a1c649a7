"""The header guard's rules (with a controlled clock), and the protocol's answers over real sockets in-process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from support import InProcessServer, ManualClock, app_of
from tidings import Hub, Settings
from tidings.server import limits as limits_module
from tidings.server.limits import HeaderGuard, ServerLimits
from tidings.server.protocol import TidingsHttpProtocol


class Sender:
    """A connection still sending headers, as the guard sees it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.refused: tuple[int, str] | None = None

    def refuse(self, status: int, code: str, message: str) -> None:
        self.refused = (status, code)


class Loop:
    """Records the guard's timer instead of running it: the test calls `fire()`."""

    def __init__(self) -> None:
        self.timers: list[Callable[[], None]] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.timers.append(callback)

    def fire(self) -> None:
        timers, self.timers = self.timers, []
        for callback in timers:
            callback()


def guard(
    clock: ManualClock, fds: Callable[[], int | None] = lambda: 10, **limits: Any
) -> tuple[HeaderGuard, Loop]:
    loop = Loop()
    limits_ = ServerLimits(**limits)
    return HeaderGuard(limits_, loop, fd_limit=1000, clock=clock, count_fds=fds), loop  # type: ignore[arg-type]


def test_beyond_the_pending_cap_the_oldest_slow_sender_is_closed_never_a_young_one() -> None:
    clock = ManualClock(frozen_at=0)
    g, _ = guard(clock, max_pending_headers=2, header_timeout=10)
    old, middle = Sender("old"), Sender("middle")
    g.started(old)
    g.started(middle)
    clock.advance(0.1)
    young = Sender("young")
    g.started(young)  # over the cap, but nobody has been at it for a second: a connect burst, not an attack
    assert g.pending == 3 and old.refused is None
    clock.advance(1)
    g.started(Sender("new"))
    assert old.refused == (408, "request_timeout") and middle.refused is None and g.pending == 3


def test_the_sweep_closes_senders_past_the_header_timeout_and_the_cap() -> None:
    clock = ManualClock(frozen_at=0)
    g, loop = guard(clock, max_pending_headers=100, header_timeout=4)
    first, second = Sender("first"), Sender("second")
    g.started(first)
    clock.advance(2)
    g.started(second)
    g.finished(second)  # its headers arrived
    third = Sender("third")
    g.started(third)
    clock.advance(2)
    loop.fire()
    assert first.refused == (408, "request_timeout") and third.refused is None
    assert loop.timers  # still something pending: it comes back
    clock.advance(2)
    loop.fire()
    assert third.refused is not None and second.refused is None and g.pending == 0 and not loop.timers


def test_near_the_file_limit_the_slowest_sender_makes_room() -> None:
    clock = ManualClock(frozen_at=0)
    open_fds = [10]  # what /proc/self/fd says: 10 descriptors besides the connections
    g, _ = guard(clock, lambda: open_fds[0], fd_reserve=100)
    assert not g.near_fd_limit(800)  # a cheap estimate, far from the limit: no count
    open_fds[0] = 10 + 890
    assert g.near_fd_limit(890)  # 890 + 10 >= 1000 - 100
    open_fds[0] = 10 + 700 + 250  # something else opened 250 files meanwhile
    clock.advance(1)
    assert not g.near_fd_limit(700)  # the estimate says far: not counted
    clock.advance(5)
    assert g.near_fd_limit(700)  # counted every few seconds anyway: 700 + 260 is within the reserve
    slow = Sender("slow")
    g.started(slow)
    open_fds[0] = 10 + 500
    clock.advance(1)
    g.make_room(500)
    assert slow.refused is None  # not near: nothing to do
    open_fds[0] = 10 + 895
    clock.advance(1)
    g.make_room(895)
    assert slow.refused == (408, "request_timeout")


def limited(**overrides: Any) -> type[TidingsHttpProtocol]:
    return type("LimitedProtocol", (TidingsHttpProtocol,), {"limits": ServerLimits(**overrides)})


@pytest.fixture
async def serve(make_settings: Callable[..., Settings]) -> AsyncIterator[Callable[..., Any]]:
    servers: list[InProcessServer] = []

    async def start(protocol: type[TidingsHttpProtocol]) -> InProcessServer:
        server = InProcessServer(app_of(Hub(make_settings())), http=protocol)  # type: ignore[arg-type]
        servers.append(server)
        return await server.__aenter__()

    yield start
    for server in servers:
        await server.__aexit__(None, None, None)


async def answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], Any]:
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode()
    status_line, *lines = head.strip().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", 0))), 10)
    return int(status_line.split()[1]), headers, orjson.loads(body) if body else None


async def test_slow_headers_get_a_json_408_and_oversized_ones_a_json_431(serve: Callable[..., Any]) -> None:
    server = await serve(limited(header_timeout=0.5, max_header_bytes=4096))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    status, headers, body = await answer(reader)
    assert status == 408 and headers["connection"] == "close" and body["error"] == "request_timeout"
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8192)
    status, _, body = await answer(reader)
    assert status == 431 and body["error"] == "headers_too_large"
    writer.close()


async def test_near_the_file_limit_new_connections_get_503_and_open_ones_are_served(
    serve: Callable[..., Any],
) -> None:
    server = await serve(limited())
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    writer.write(request)
    assert (await answer(reader))[0] == 200
    state_guard = limits_module.guard_for(
        server.server.server_state, ServerLimits(), asyncio.get_running_loop()
    )
    state_guard.fd_limit = 0  # the process is now out of file descriptors
    writer.write(request)  # a kept-alive connection costs no new descriptor: still served
    assert (await answer(reader))[0] == 200
    new_reader, new_writer = await asyncio.open_connection("127.0.0.1", server.port)
    new_writer.write(request)
    status, headers, body = await answer(new_reader)
    assert status == 503 and headers["retry-after"] == "5" and body["error"] == "overloaded"
    for w in (writer, new_writer):
        w.close()
