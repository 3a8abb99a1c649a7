"""Start, probe, measure and stop the systems under test, each pinned to the server CPU.

Why a launcher of its own: every system must start the same way for the figures to compare — fresh process,
same CPU affinity, fd limit raised, backlog ≥ 4096 (10,000 clients connect in a burst), logs to a file rather
than the terminal, readiness by ``GET /healthz`` — and server CPU and RSS are read from outside with psutil,
including child processes, so nothing in the servers is instrumented.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.protocol import JWT_SECRET, PUBLISH_KEY

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BACKLOG = 4096
SYSTEMS = ("tidings", "naive", "ceiling")
LOCK_PATH = Path(tempfile.gettempdir()) / "tidings-bench.lock"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _command(system: str, port: int) -> list[str]:
    common = ["--host", "127.0.0.1", "--port", str(port)]
    if system == "tidings":
        return [PYTHON, "-m", "tidings", "serve", *common]
    if system == "naive":
        return [
            PYTHON,
            "-m",
            "uvicorn",
            "bench.baselines.naive:app",
            *common,
            "--backlog",
            str(BACKLOG),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    if system == "ceiling":
        return [PYTHON, "-m", "bench.baselines.ceiling", *common, "--backlog", str(BACKLOG)]
    raise ValueError(f"unknown system {system!r}")


def _env(system: str, data_dir: Path, bus_url: str | None, redis_prefix: str | None) -> dict[str, str]:
    env = dict(os.environ)
    src = str(ROOT / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), src, env.get("PYTHONPATH", "")) if p)
    env.update(
        {
            "TIDINGS_JWT_SECRET": JWT_SECRET,
            "TIDINGS_PUBLISH_KEY": PUBLISH_KEY,
            "TIDINGS_ENV": "development",
            "TIDINGS_DATA_DIR": str(data_dir),
            "TIDINGS_LOG_LEVEL": "warning",
            "TIDINGS_TOPICS_OPEN": "true",  # every client reads the bench topic; its tokens carry no grants
        }
    )
    if bus_url:
        env["TIDINGS_BUS_URL"] = bus_url
    if redis_prefix:
        env["TIDINGS_REDIS_PREFIX"] = redis_prefix
    return env


def _pin_and_raise(cpu: int | None) -> None:
    """Runs in the child before exec: threads created later inherit the affinity and the fd limit."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class Server:
    """One running system under test."""

    system: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    ps: psutil.Process = field(init=False)

    def __post_init__(self) -> None:
        self.ps = psutil.Process(self.proc.pid)

    @property
    def addr(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self.ps, *self.ps.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self._tree():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def rss(self) -> int:
        total = 0
        for p in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                for p in reversed(self._tree()):
                    p.kill()
                self.proc.wait(5)

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def start(
    system: str,
    cpu: int | None,
    run_dir: Path,
    *,
    bus_url: str | None = None,
    redis_prefix: str | None = None,
    tag: str = "",
    timeout: float = 30,
) -> Server:
    """Launch ``system`` on a free port and wait until ``/healthz`` answers 200."""
    port = free_port()
    log = run_dir / f"{system}{tag}-{port}.log"
    data_dir = run_dir / f"data-{system}{tag}-{port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            _command(system, port),
            cwd=ROOT,
            env=_env(system, data_dir, bus_url, redis_prefix),
            stdout=fh,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: _pin_and_raise(cpu),
        )
    server = Server(system, port, proc, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"{system} exited at start-up:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{system} not healthy after {timeout}s:\n{server.log_tail()}")


@contextlib.contextmanager
def exclusive(wait: float = 900) -> Iterator[None]:
    """One benchmark at a time on this host: two overlapping runs would each measure the other's load.

    A second ``python -m bench`` / ``bench.profile`` waits (up to ``wait`` seconds) for the first to finish.
    """
    with open(LOCK_PATH, "a+") as fh:
        deadline = time.monotonic() + wait
        announced = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"another benchmark still holds {LOCK_PATH} after {wait:.0f} s"
                    ) from None
                if not announced:
                    print(f"waiting for another benchmark run to finish ({LOCK_PATH})", flush=True)
                    announced = True
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def check_host_limits(clients: int) -> list[str]:
    """Warnings when the kernel or fd limits cannot hold ``clients`` loopback connections."""
    warnings = []

    def sysctl(name: str) -> str:
        try:
            return Path("/proc/sys/" + name.replace(".", "/")).read_text().strip()
        except OSError:
            return ""

    somax = sysctl("net.core.somaxconn")
    if somax and int(somax) < BACKLOG:
        warnings.append(f"net.core.somaxconn={somax} < backlog {BACKLOG}: connects may see SYN retries")
    ports = sysctl("net.ipv4.ip_local_port_range").split()
    if len(ports) == 2 and int(ports[1]) - int(ports[0]) < clients + 1000:
        warnings.append(f"ephemeral port range {ports} too small for {clients} clients")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < clients + 512:
        warnings.append(f"RLIMIT_NOFILE hard limit {hard} < {clients} + 512")
    return warnings
