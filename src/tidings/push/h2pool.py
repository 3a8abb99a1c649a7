"""A pool of one live HTTP/2 connection per origin (h2client.Connection), replaced when it closes.

After GOAWAY, a lost connection, used-up stream ids or a silent connection, the next request opens a new one;
streams still running on the old connection finish there.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

from .h2client import Connection, H2Unsupported, Response


class Pool:
    """One live connection to one origin, replaced when it closes. `request` never blocks the loop."""

    def __init__(
        self, url: str, *, connect_timeout: float = 10.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        """`ssl_context` for https (default: the system's trust store); ALPN is set to h2 on it."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.scheme, self.host = parts.scheme, parts.hostname
        self.port = parts.port or (443 if self.scheme == "https" else 80)
        default = (self.scheme == "https" and self.port == 443) or (self.scheme == "http" and self.port == 80)
        self.authority = self.host if default else f"{self.host}:{self.port}"
        self.connect_timeout = connect_timeout
        self.ssl_context = ssl_context
        if self.scheme == "https":
            # Built once: the default context loads the system trust store, which takes milliseconds.
            self.ssl_context = ssl_context or ssl.create_default_context()
            self.ssl_context.set_alpn_protocols(["h2"])
        self.connections_opened = 0
        self._connection: Connection | None = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> Connection:
        context = self.ssl_context
        loop = asyncio.get_running_loop()
        connection: Connection | None = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: Connection(self.authority, self.scheme), self.host, self.port, ssl=context
                )
                transport = connection.transport
                if context is not None:
                    ssl_object = transport.get_extra_info("ssl_object") if transport else None
                    if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
                        raise H2Unsupported("the server did not agree to HTTP/2 (ALPN)")
                await connection.ready
        except BaseException:
            if connection is not None and connection.transport is not None:
                connection.transport.close()  # a half-made connection must not linger
            raise
        self.connections_opened += 1
        return connection

    async def connection(self) -> Connection:
        connection = self._connection
        if connection is not None and not connection.closed:
            return connection
        async with self._lock:
            if self._connection is None or self._connection.closed:
                self._connection = await self._connect()
            return self._connection

    async def request(self, path: bytes, headers: bytes, body: bytes, wait: float) -> Response:
        connection = self._connection
        if connection is None or connection.closed:
            async with asyncio.timeout(wait):
                connection = await self.connection()
        return await connection.request(path, headers, body, wait)

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.transport is not None:
            connection.closed = True
            connection.flush()
            connection.transport.close()
