"""The SSE load generator: processes that each hold thousands of raw-socket SSE clients.

Why raw ``asyncio.Protocol`` clients on uvloop rather than httpx: an HTTP client library costs tens of µs and
several objects per received frame, so the generator — not the server — would be measured. Here a client is
one small object; a received chunk costs one ``rfind`` for the last complete frame and one C-level regex pass
that pulls every ``"t": <ns>`` publish timestamp out of it. Latency is receive time minus that timestamp (both
``time.time_ns()`` on the same host). Chunked transfer-encoding markers between frames are harmless: they land
outside the ``data:`` JSON the regex reads.

Each worker process is driven over a ``multiprocessing`` pipe by the coordinator (``GeneratorPool``) and
pinned to the generator CPU so the server under test keeps its own core.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import resource
import threading
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from bench.protocol import T_RE, mint_token, stream_request

CONNECT_TIMEOUT = 30.0  # per stream, from SYN to ``:ok``


def raise_nofile() -> None:
    """Lift the soft fd limit to the hard limit: each client (and each server connection) is one fd."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class SseClient(asyncio.Protocol):
    """One SSE stream. Until ``:ok`` it parses the response head; afterwards it only extracts timestamps."""

    __slots__ = ("buf", "ready", "request", "transport", "worker")

    def __init__(self, worker: Worker, request: bytes, ready: asyncio.Future[bool]) -> None:
        self.worker = worker
        self.request = request
        self.buf = b""
        self.ready: asyncio.Future[bool] | None = ready
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]
        self.request = b""

    def connection_lost(self, exc: Exception | None) -> None:
        self.worker.on_lost(self)
        self._resolve(False)

    def data_received(self, data: bytes) -> None:
        if self.ready is not None:
            data = self._head(data)
            if not data:
                return
        buf = self.buf + data if self.buf else data
        end = buf.rfind(b"\n\n")
        if end < 0:
            self.buf = buf
            return
        self.buf = buf[end + 2 :]
        stamps = T_RE.findall(buf, 0, end)
        if stamps:
            self.worker.record(stamps)

    def _head(self, data: bytes) -> bytes:
        """Wait for the status line and the ``:ok`` comment; return what follows it."""
        buf = self.buf + data
        if b"\r\n\r\n" not in buf:
            self.buf = buf
            return b""
        assert self.transport is not None
        if not buf.startswith(b"HTTP/1.1 200"):
            self.worker.errors.append(buf[:120].decode("latin-1"))
            self._resolve(False)
            self.transport.close()
            return b""
        i = buf.find(b"ok\n\n")
        if i < 0:
            self.buf = buf
            return b""
        self.buf = b""
        self._resolve(True)
        return buf[i + 4 :]

    def _resolve(self, ok: bool) -> None:
        """Settle the connect future once; it may already be cancelled by the connect timeout."""
        if self.ready is not None and not self.ready.done():
            self.ready.set_result(ok)
        self.ready = None


@dataclass
class Worker:
    """The state of one generator process: its clients and the current measurement window."""

    loop: asyncio.AbstractEventLoop
    clients: set[SseClient] = field(default_factory=set)
    lat_us: array[int] = field(default_factory=lambda: array("q"))
    frames: int = 0
    lost: int = 0
    measuring: bool = False
    errors: list[str] = field(default_factory=list)

    def record(self, stamps: list[bytes]) -> None:
        now = time.time_ns()
        self.frames += len(stamps)
        if self.measuring:
            self.lat_us.extend([(now - int(t)) // 1000 for t in stamps])

    def on_lost(self, client: SseClient) -> None:
        if client in self.clients:
            self.clients.discard(client)
            self.lost += 1

    async def connect(
        self, host: str, port: int, topics: str, users: list[str], concurrency: int
    ) -> dict[str, Any]:
        """Open one stream per user; time from first SYN to the last ``:ok``."""
        requests = [stream_request(host, port, topics, mint_token(u)) for u in users]
        sem = asyncio.Semaphore(concurrency)
        ok = 0

        async def one(req: bytes) -> None:
            nonlocal ok
            async with sem:
                ready: asyncio.Future[bool] = self.loop.create_future()
                proto: SseClient | None = None
                try:
                    _, proto = await self.loop.create_connection(
                        lambda: SseClient(self, req, ready), host, port
                    )
                    if await asyncio.wait_for(ready, CONNECT_TIMEOUT):
                        self.clients.add(proto)
                        ok += 1
                except (OSError, TimeoutError) as exc:
                    self.errors.append(repr(exc))
                    if proto is not None and proto.transport is not None:
                        proto.transport.abort()  # not counted, so not kept

        t0 = time.time()
        await asyncio.gather(*(one(r) for r in requests))
        return {
            "ok": ok,
            "failed": len(users) - ok,
            "t_start": t0,
            "t_end": time.time(),
            "errors": self.errors[:5],
        }

    def start(self) -> None:
        self.lat_us = array("q")
        self.frames = 0
        self.lost = 0
        self.measuring = True

    def stop(self) -> dict[str, Any]:
        self.measuring = False
        return {"frames": self.frames, "lat_us": self.lat_us.tobytes(), "lost": self.lost}

    def close_all(self) -> int:
        n = len(self.clients)
        for c in list(self.clients):
            if c.transport is not None:
                c.transport.abort()
        self.clients.clear()
        return n


async def _serve(conn: Connection) -> None:
    """Execute coordinator commands; replies carry the CPU this process used, for the generator-CPU column."""
    loop = asyncio.get_running_loop()
    worker = Worker(loop)
    inbox: asyncio.Queue[tuple[int, str, dict[str, Any]]] = asyncio.Queue()

    def read_commands() -> None:
        # A blocking reader thread, not loop.add_reader: uvloop would make the pipe non-blocking, and large
        # replies (latency arrays) would then fail to send with EAGAIN.
        while True:
            msg = conn.recv()
            loop.call_soon_threadsafe(inbox.put_nowait, msg)
            if msg[1] == "exit":
                return

    threading.Thread(target=read_commands, daemon=True).start()
    while True:
        seq, cmd, args = await inbox.get()
        reply: Any = None
        try:
            reply = await _execute(worker, cmd, args)
        except Exception as exc:  # report, don't die: the coordinator is waiting for an answer
            reply = {"error": f"{cmd}: {exc!r}"}
        if cmd == "exit":
            conn.send(None)
            return
        conn.send((seq, reply, time.process_time()))


async def _execute(worker: Worker, cmd: str, args: dict[str, Any]) -> Any:
    """One coordinator command."""
    reply: Any = None
    if cmd == "connect":
        reply = await worker.connect(**args)
    elif cmd == "start":
        worker.start()
    elif cmd == "count":
        reply = worker.frames
    elif cmd == "stop":
        reply = worker.stop()
    elif cmd == "close":
        reply = worker.close_all()
        await asyncio.sleep(0.2)
    return reply


def worker_main(conn: Connection, cpu: int | None) -> None:
    """Process entry point: pin, raise the fd limit, run the command loop on uvloop if available."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    raise_nofile()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(_serve(conn))


@dataclass
class Sample:
    """What the pool collected over one measurement window."""

    frames: int
    lat_us: array[int]
    lost: int
    gen_cpu_s: float
    per_worker: list[tuple[int, array[int]]]


class GeneratorPool:
    """The coordinator's handle on the generator processes (synchronous: it only sends commands and waits)."""

    def __init__(self, procs: int, cpu: int | None) -> None:
        ctx = mp.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs: list[Any] = []
        self.cpu_mark: list[float] = []
        for _ in range(procs):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=worker_main, args=(child, cpu), daemon=True)
            p.start()
            self.pipes.append(parent)
            self.procs.append(p)
        self.cpu_now = [0.0] * procs
        self.seq = 0

    def _all(
        self, cmd: str, args_list: list[dict[str, Any]] | None = None, timeout: float = 120
    ) -> list[Any]:
        self.seq += 1
        for i, pipe in enumerate(self.pipes):
            pipe.send((self.seq, cmd, args_list[i] if args_list else {}))
        out = []
        deadline = time.monotonic() + timeout
        for i, pipe in enumerate(self.pipes):
            while (
                True
            ):  # replies to commands that timed out earlier arrive late: skip them by sequence number
                if not pipe.poll(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"generator worker {i} did not answer {cmd!r} in {timeout}s")
                seq, reply, cpu = pipe.recv()
                if seq == self.seq:
                    break
            if isinstance(reply, dict) and "error" in reply:
                raise RuntimeError(f"generator worker {i}: {reply['error']}")
            self.cpu_now[i] = cpu
            out.append(reply)
        return out

    def connect(
        self, targets: list[tuple[str, int]], topics: str, users: list[str], concurrency: int = 256
    ) -> dict[str, Any]:
        """Spread ``users`` over the workers; worker i connects to ``targets[i % len(targets)]``."""
        n = len(self.pipes)
        args = [
            {
                "host": targets[i % len(targets)][0],
                "port": targets[i % len(targets)][1],
                "topics": topics,
                "users": users[i::n],
                "concurrency": concurrency,
            }
            for i in range(n)
        ]
        replies = self._all("connect", args, timeout=180)
        return {
            "ok": sum(r["ok"] for r in replies),
            "failed": sum(r["failed"] for r in replies),
            "seconds": max(r["t_end"] for r in replies) - min(r["t_start"] for r in replies),
            "errors": [e for r in replies for e in r["errors"]][:5],
        }

    def start(self) -> None:
        self._all("start")
        self.cpu_mark = list(self.cpu_now)

    def frames(self) -> int:
        return sum(self._all("count"))

    def stop(self) -> Sample:
        replies = self._all("stop")
        per_worker = []
        merged = array("q")
        for r in replies:
            a = array("q")
            a.frombytes(r["lat_us"])
            per_worker.append((r["frames"], a))
            merged.extend(a)
        cpu = sum(now - mark for now, mark in zip(self.cpu_now, self.cpu_mark, strict=True))
        return Sample(
            sum(r["frames"] for r in replies), merged, sum(r["lost"] for r in replies), cpu, per_worker
        )

    def close(self) -> int:
        return sum(self._all("close"))

    def shutdown(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send((0, "exit", {}))
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.kill()
