"""`tidings serve` under hostile clients, at a low open-files limit: slowloris, oversized headers, a full house.

Each test runs a real server process whose RLIMIT_NOFILE (soft and hard) is set before it starts, the way a
container or a systemd unit with the common 1,024 default would run it.
"""

from __future__ import annotations

import contextlib
import resource
import select
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import psutil
import pytest

from support import PUBLISH_KEY, ServerProcess

AUTH = {"Authorization": f"Bearer {PUBLISH_KEY}"}
HEADER_TIMEOUT = 3.0
EVENT = {"type": "a.b", "data": {}, "to": {"broadcast": True}}


def open_files_limit(soft: int, hard: int | None = None) -> Callable[[], None]:
    def apply() -> None:  # in the child, before exec
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard or soft))

    return apply


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def run(env: dict[str, str], *, soft: int = 1024, hard: int | None = None) -> ServerProcess:
        settings = {
            "TIDINGS_LOG_LEVEL": "warning",
            "TIDINGS_SERVER_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
            **env,
        }
        server = ServerProcess(
            settings, tmp_path / f"data{len(started)}", preexec_fn=open_files_limit(soft, hard)
        )
        started.append(server)
        return server.start()

    yield run
    for server in started:
        server.stop()


def publish(base: str) -> int:
    """One publish over a new connection (a backend without keep-alive), as a legitimate client makes it."""
    event = {"type": "a.b", "data": {}, "to": {"users": ["alice"]}}
    try:
        return httpx.post(f"{base}/v1/publish", headers=AUTH, json=event, timeout=10).status_code
    except httpx.HTTPError:
        return 0  # no answer at all: the denial of service this guards against


def closed_by_peer(sock: socket.socket) -> bool:
    """The server answered (408) or closed this socket."""
    events = select.poll()
    events.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR | select.POLLRDHUP)
    return bool(events.poll(0))


def first_bytes(sock: socket.socket) -> bytes:
    try:
        return sock.recv(64)
    except OSError:
        return b""


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def test_slowloris_at_a_1024_file_limit_does_not_deny_service(
    start: Callable[..., ServerProcess], token: Callable[..., str]
) -> None:
    """Regression: 1,024 sockets sending their headers a byte at a time held every file descriptor of a server
    with the common 1,024 limit, forever; every legitimate request then failed."""
    server = start({})
    assert server.proc is not None
    baseline_fds = psutil.Process(server.proc.pid).num_fds()
    request = b"GET /v1/events HTTP/1.1\r\nHost: tidings\r\nX-Padding: "
    slow: list[socket.socket] = []
    try:
        for _ in range(1024):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.send(request[:1])
            slow.append(sock)
        attack_started = time.monotonic()
        for offset in range(1, 4):  # the attack's own pace: a byte per socket every half second
            time.sleep(0.5)
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.send(request[offset : offset + 1])

        assert [publish(server.url) for _ in range(5)] == [202] * 5
        with httpx.stream(
            "GET", f"{server.url}/v1/events", params={"token": token("alice")}, timeout=10
        ) as live:
            assert live.status_code == 200
            lines = live.iter_lines()
            assert next(lines).startswith("retry:")
            assert publish(server.url) == 202
            assert any(line.startswith("id:") for line, _ in zip(lines, range(20), strict=False))

        remaining = HEADER_TIMEOUT + 3 - (time.monotonic() - attack_started)
        wait_until(
            lambda: all(closed_by_peer(s) for s in slow), remaining, "the header timeout closed them all"
        )
        answers = [first_bytes(s) for s in slow]
        assert sum(a.startswith(b"HTTP/1.1 408") for a in answers) > 500  # the rest: never accepted
        wait_until(
            lambda: psutil.Process(server.proc.pid).num_fds() <= baseline_fds + 20,  # type: ignore[union-attr]
            5,
            "their descriptors are freed",
        )
        assert "open-files limit is 1024" in server.logs()  # said at start: it cannot be raised
    finally:
        for sock in slow:
            sock.close()


def test_an_oversized_header_is_refused_without_growing_memory(start: Callable[..., ServerProcess]) -> None:
    """Regression: an unfinished 10 MB header was read and kept in full (20 of them: +233 MB)."""
    server = start({}, soft=1024, hard=8192)
    assert server.proc is not None
    process = psutil.Process(server.proc.pid)
    before = process.memory_info().rss
    answers: list[bytes] = []
    for _ in range(10):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: tidings\r\nX-Big: ")
            with contextlib.suppress(OSError):  # the server may close while we still send
                for _ in range(64):  # 4 MB, 64 KB at a time
                    sock.sendall(b"a" * 65536)
            try:
                answers.append(sock.recv(64))
            except ConnectionResetError:
                answers.append(b"")  # closed before we read the 431: a clean refusal too
    assert all(a.startswith(b"HTTP/1.1 431") or a == b"" for a in answers), answers
    assert any(a.startswith(b"HTTP/1.1 431") for a in answers)
    assert process.memory_info().rss - before < 16 << 20
    assert publish(server.url) == 202
    assert process.rlimit(psutil.RLIMIT_NOFILE) == (8192, 8192)  # raised to the hard limit at start


def test_a_full_server_answers_503_with_retry_after_instead_of_failing_accepts(
    start: Callable[..., ServerProcess], token: Callable[..., str]
) -> None:
    """Streams up to the open-files limit: new connections get a JSON 503 + Retry-After (never a reset), and a
    connection already open keeps being served."""
    server = start({"TIDINGS_MAX_CONNECTIONS_PER_USER": "0"}, soft=512)
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as publisher:  # keep-alive, opened first
        streams: list[socket.socket] = []
        statuses: list[int] = []
        refusals: list[tuple[str, dict[str, object]]] = []
        try:
            for i in range(540):
                if i % 50 == 0:  # a backend publishing all along, on its kept-alive connection
                    assert publisher.post("/v1/publish", json=EVENT).status_code == 202
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                streams.append(sock)
                sock.sendall(
                    f"GET /v1/events?token={token(f'u{i}')} HTTP/1.1\r\nHost: tidings\r\n\r\n".encode()
                )
                status, headers, body = read_answer(sock)
                statuses.append(status)
                if status == 503:
                    refusals.append((headers.get("retry-after", ""), orjson.loads(body)))
            assert 0 not in statuses, "a connection failed without an answer"
            assert statuses.count(200) > 400 and statuses.count(200) + len(refusals) == 540
            assert refusals and all(
                after == "5" and body["error"] == "overloaded" for after, body in refusals
            )
            assert (
                publisher.post("/v1/publish", json=EVENT).status_code == 202
            )  # its connection is still served
        finally:
            for sock in streams:
                sock.close()


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and (for a sized answer) body of the response on `sock`; status 0 if it was cut."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return 0, {}, b""
            data += chunk
    except OSError:
        return 0, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body
