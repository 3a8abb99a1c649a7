"""The memory budget of a real `tidings serve` process: streams that never read cannot take the memory.

Measured on the old code: 3,000 such streams took RSS from 151 MB to 3.28 GB, still held after they were cut.
Here 200 of them (the process cap scaled down with them), RSS read with psutil throughout.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from support import PUBLISH_KEY, ServerProcess

CAP = 40 << 20  # TIDINGS_STREAM_BUFFER_TOTAL_BYTES
PER_STREAM = 1 << 20  # TIDINGS_STREAM_BUFFER_BYTES: the old default, so only the process cap differs early on
MB = 1 << 20
GRACE = 1.0  # tidings.streams.budget.GRACE: only streams behind for this long are cut for the budget


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    env = {
        "TIDINGS_LOG_LEVEL": "warning",
        "TIDINGS_STREAM_BUFFER_TOTAL_BYTES": str(CAP),
        "TIDINGS_STREAM_BUFFER_BYTES": str(PER_STREAM),
    }
    running = ServerProcess(env, tmp_path / "data").start()
    yield running
    running.stop()


class Sampler:
    """The server's peak RSS, sampled every 20 ms in a thread while the test runs."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def non_readers(port: int, token: Callable[..., str], prefix: str, count: int) -> list[socket.socket]:
    """Streams whose clients never read (a tiny receive window, and no recv ever)."""
    socks = []
    for i in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(
            f"GET /v1/events?token={token(f'{prefix}{i}')} HTTP/1.1\r\nHost: tidings\r\n\r\n".encode()
        )
        socks.append(sock)
    return socks


def cut(sock: socket.socket) -> bool:
    """The server dropped this stream (it resets a stream it cuts, so pending data does not hide it)."""
    events = select.poll()
    events.register(sock, select.POLLHUP | select.POLLERR | select.POLLRDHUP)
    return bool(events.poll(0))


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def active_streams(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith('sse_connections_active{role="user"} '):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def broadcast(client: httpx.Client, events: int) -> None:
    """`events` events of ~4 KB to everyone, in batches of 100."""
    blob = "x" * 4000
    while events > 0:
        batch = min(events, 100)
        event = {"type": "load.tick", "data": {"blob": blob}, "to": {"broadcast": True}}
        assert client.post("/v1/publish", json=[event] * batch).status_code == 202
        events -= batch


def test_streams_that_never_read_are_cut_furthest_behind_first_and_their_memory_returned(
    server: ServerProcess, token: Callable[..., str]
) -> None:
    assert server.proc is not None
    process = psutil.Process(server.proc.pid)
    early = non_readers(server.port, token, "early", 100)
    late: list[socket.socket] = []
    try:
        wait_until(lambda: active_streams(server.url) == 100, 10, "100 streams open")
        with (
            Sampler(process) as rss,
            httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {PUBLISH_KEY}"}) as client,
        ):
            idle = rss.rss()
            broadcast(client, 100)  # ~400 KB each to the early streams: under every limit
            time.sleep(GRACE + 0.2)  # the behaviour under test: they have now been behind for over a second
            assert not any(cut(s) for s in early)

            late = non_readers(server.port, token, "late", 100)
            wait_until(lambda: active_streams(server.url) == 200, 10, "200 streams open")
            broadcast(client, 75)  # ~300 KB more to all: the total passes the cap
            wait_until(lambda: sum(cut(s) for s in early) >= 30, 5, "the furthest-behind streams are cut")
            assert not any(cut(s) for s in late)  # each holds less than half of what an early one holds

            broadcast(client, 300)  # ~1.2 MB more: every stream is now over its own limit, or the cap's
            wait_until(lambda: all(cut(s) for s in early + late), 10, "every non-reader is cut")
            wait_until(lambda: rss.rss() <= idle + 16 * MB, 5, "the memory is returned after the cut")
        assert rss.peak <= idle + CAP + 48 * MB, (idle // MB, rss.peak // MB)
    finally:
        for sock in early + late:
            sock.close()
