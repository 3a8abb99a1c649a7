"""Run a Starlette app on uvicorn inside the current event loop, on a free port of 127.0.0.1.

`startup` / `main_loop` / `shutdown` are driven directly instead of `Server.serve()` so that an in-process
sandbox (tests) does not take over the process's signal handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from types import TracebackType
from typing import TYPE_CHECKING, Self

import uvicorn
from starlette.types import ASGIApp

if TYPE_CHECKING:
    from .control import SandboxState
    from .h2server import H2Server


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class UvicornServer:
    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0) -> None:
        config = uvicorn.Config(
            app, lifespan="off", log_level="warning", access_log=False, timeout_graceful_shutdown=1
        )
        config.load()
        self._server = uvicorn.Server(config)
        self._sock = bind(host, port)
        self._task: asyncio.Task[None] | None = None
        self.host, self.port = self._sock.getsockname()[:2]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server.lifespan = self._server.config.lifespan_class(self._server.config)
        await self._server.startup(sockets=[self._sock])
        self._task = asyncio.create_task(self._server.main_loop())

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 5)
            await self._server.shutdown(sockets=[self._sock])
            self._task = None


class SandboxServers:
    """What every sandbox is: an HTTP/2 service (`url`) and an HTTP/1.1 control app (`control_url`), started and
    stopped together, usable as `async with`. Subclasses set `h2`, `_control` and `state` in `__init__`."""

    h2: H2Server
    _control: UvicornServer
    state: SandboxState

    @property
    def url(self) -> str:
        return self.h2.url

    @property
    def control_url(self) -> str:
        return self._control.url

    async def start(self) -> None:
        await self.h2.start()
        await self._control.start()

    async def stop(self) -> None:
        self.state.stopping.set()
        await self.h2.stop()
        await self._control.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
