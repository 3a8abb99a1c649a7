"""Test helpers: a real SSE reader, an in-process uvicorn server and a server subprocess, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(ok: bool, what: str) -> None:
    """Skip locally, fail in CI: a missing service, browser or peer must never turn CI green by skipping."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{what} is required when CI=true")
    pytest.skip(f"{what} is not available (set CI=true to make this a failure)")


class ManualClock:
    """The tests' one clock. `ManualClock()` is real time plus an offset that `advance()` moves (delays become due
    at once while a real broker's own timers still run); `ManualClock(frozen_at=t)` stands still until advanced."""

    def __init__(self, *, frozen_at: float | None = None) -> None:
        self.frozen_at = frozen_at
        self.offset = 0.0

    def __call__(self) -> float:
        base = time.time() if self.frozen_at is None else self.frozen_at
        return base + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    @property
    def now(self) -> float:
        return self()

    @now.setter
    def now(self, value: float) -> None:
        """Set the time: from now on the clock stands still at `value` until advanced or set again."""
        self.frozen_at, self.offset = value, 0.0


def frozen_clock(start: float | None = None) -> ManualClock:
    """A clock standing still at `start` (default: the real time now, so Redis TTLs stay sensible)."""
    return ManualClock(frozen_at=time.time() if start is None else start)


REDIS_URL = os.environ.get("TIDINGS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def redis_or_skip() -> Any:
    """A client of the real Redis (the caller closes it); skip locally / fail under CI when it is absent."""
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:  # any connection failure means the service is absent
        await client.aclose()
        require(False, f"Redis at {REDIS_URL} ({exc})")
    return client


async def drop_prefix(client: Any, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await client.delete(*keys)


TIDINGS_PROTOCOL = "tidings.server.protocol:TidingsHttpProtocol"  # what `tidings serve` runs
PLAIN_PROTOCOL = "httptools"  # what a host app's server runs: streams go through ASGI `send`
SECRET = "test-secret-0123456789abcdef0123456789"
PUBLISH_KEY = "test-publish-key"


def app_of(hub: Any) -> Any:
    """The standalone app for `hub`, without touching this process's signal handlers (pytest owns them)."""
    from tidings.server.app import create_app

    return create_app(hub, handle_signals=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Frame:
    """One dispatched SSE frame (or comment), parsed per the WHATWG rules."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return orjson.loads(self.data)


def parse_frames(text: str) -> list[Frame]:
    frames = []
    for block in text.replace("\r\n", "\n").replace("\r", "\n").split("\n\n"):
        if not block:
            continue
        frame, data = Frame(), []
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "":
                frame.comments.append(value)
            elif name == "data":
                data.append(value)
            elif name == "event":
                frame.event = value
            elif name == "id":
                frame.id = value
            elif name == "retry":
                frame.retry = int(value)
        frame.data = "\n".join(data)
        frames.append(frame)
    return frames


class SSEStream:
    """An open stream read with a real HTTP client; `next_event()` waits (bounded) for the next event frame."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._buffer = ""
        self._frames: list[Frame] = []
        self._chunks = response.aiter_text()
        # The read in progress survives a timeout (shielded): cancelling the body iterator itself would end it,
        # and no frame could be read after an `assert_silent`.
        self._reading: asyncio.Future[str] | None = None

    async def next_frame(self, timeout: float = 5.0) -> Frame:
        async with asyncio.timeout(timeout):
            while not self._frames:
                if self._reading is None:
                    self._reading = asyncio.ensure_future(anext(self._chunks))
                try:
                    chunk = await asyncio.shield(self._reading)
                finally:
                    if self._reading.done():
                        self._reading = None
                self._buffer += chunk
                *complete, self._buffer = self._buffer.split("\n\n")
                self._frames += parse_frames("\n\n".join(complete) + "\n\n") if complete else []
            return self._frames.pop(0)

    def stop_reading(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            self._reading = None

    async def next_event(self, timeout: float = 5.0) -> Frame:
        while True:
            frame = await self.next_frame(timeout)
            if frame.data or frame.event != "message":
                return frame

    async def events(self, count: int, timeout: float = 5.0) -> list[Frame]:
        return [await self.next_event(timeout) for _ in range(count)]

    async def assert_silent(self, seconds: float) -> None:
        """No event frame arrives within `seconds` (comments such as keepalives are fine)."""
        with contextlib.suppress(TimeoutError):
            frame = await self.next_event(seconds)
            raise AssertionError(f"unexpected event {frame}")


@contextlib.asynccontextmanager
async def open_stream(
    base: str,
    path: str = "/v1/events",
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> AsyncIterator[SSEStream]:
    query = dict(params or {})
    if token:
        query["token"] = token
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(10, read=30)) as client:
        async with client.stream("GET", path, params=query, headers=headers or {}) as response:
            assert response.status_code == 200, (response.status_code, await response.aread())
            stream = SSEStream(response)
            try:
                first = await stream.next_frame()
                assert first.retry is not None and first.comments == ["ok"], first
                yield stream
            finally:
                stream.stop_reading()


class InProcessServer:
    """uvicorn serving an app on a free port, in the test's own event loop (the hub's internals stay visible)."""

    def __init__(self, app: Any, *, http: str = TIDINGS_PROTOCOL) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=1,
            http=http,
        )
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> InProcessServer:
        self._task = asyncio.create_task(self.server.serve())
        async with asyncio.timeout(10):
            while not self.server.started:
                await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        assert self._task is not None
        async with asyncio.timeout(15):
            await self._task


class ServerProcess:
    """`python -m tidings serve` in a subprocess, for signals, workers and cross-process delivery; or another
    server (`command`, e.g. `["uvicorn", "--factory", "examples.delivery.app:create_app"]`) whose health route
    is `health`."""

    def __init__(
        self,
        env: dict[str, str],
        data_dir: Path,
        *args: str,
        preexec_fn: Callable[[], None] | None = None,
        port: int | None = None,
        command: list[str] | None = None,
        health: str = "/healthz",
    ) -> None:
        self.command = command or ["tidings", "serve"]
        self.health = health
        self.preexec_fn = preexec_fn  # runs in the child before exec (e.g. a lower open-files limit)
        self.port = port or free_port()  # a restarted server takes its predecessor's port
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / f"server-{self.port}.log"
        self.env = {
            **os.environ,
            "TIDINGS_DATA_DIR": str(data_dir),
            "TIDINGS_JWT_SECRET": SECRET,
            "TIDINGS_PUBLISH_KEY": PUBLISH_KEY,
            **env,
        }
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 45.0) -> ServerProcess:  # imports take seconds on a loaded machine
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *self.command, "--port", str(self.port), *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=self.preexec_fn,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}{self.health}", timeout=1).status_code == 200:
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.log_path.read_text()}")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")
