"""Shared parts of the presence and debounce tests: a clock we move by hand, a Redis client that counts its
round trips, polling with a deadline, and a child Python process running a snippet against our package."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

SRC = str(Path(__file__).resolve().parents[2] / "src")


class CountingRedis(Redis):
    """A client that counts its round trips: each command sent on its own, each pipeline executed."""

    calls: int = 0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.calls += 1
        return await super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        async def counted(raise_on_error: bool = True) -> Any:
            self.calls += 1
            return await execute(raise_on_error)

        pipe.execute = counted  # type: ignore[method-assign]
        return pipe


async def wait_until(
    condition: Callable[[], Awaitable[bool]], seconds: float, interval: float = 0.02
) -> None:
    """Poll an async condition until it holds; fail (TimeoutError) after `seconds`."""
    async with asyncio.timeout(seconds):
        while not await condition():
            await asyncio.sleep(interval)


async def spawn(code: str, *args: str) -> asyncio.subprocess.Process:
    """`python -c code args...` with our package importable; stdout is piped for its 'ready' lines."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH", "")]))
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args, env=env, stdout=asyncio.subprocess.PIPE
    )


async def read_line(proc: asyncio.subprocess.Process, seconds: float = 60.0) -> str:
    assert proc.stdout is not None
    async with asyncio.timeout(seconds):
        line = await proc.stdout.readline()
    if not line:
        raise AssertionError(f"child exited ({await proc.wait()}) before writing a line")
    return line.decode().strip()


async def kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
    async with asyncio.timeout(10):
        await proc.wait()
