"""A redis-server of a test's own: restarts, output-buffer limits, and memory or slow-log figures that no other
test (or agent) sharing the main Redis disturbs."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from support import free_port


class RedisServer:
    """`redis-server` on a free port, no persistence; `options` are extra `--name value` settings."""

    def __init__(self, directory: Path, options: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.options = options or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.directory)]
        for name, value in self.options.items():
            args += [f"--{name}", *value.split(" ")]
        self.proc = subprocess.Popen(["redis-server", *args], stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)  # a process starting up: nothing to wait on but the port
        raise RuntimeError("redis-server did not start")

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
