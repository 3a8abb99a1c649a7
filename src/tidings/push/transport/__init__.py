"""The one way push providers speak HTTP: `Transport.request`, HTTP/2 on the `h2` library, HTTP/1.1 as fallback.

    transport = Transport(timeout=10.0)
    response = await transport.request("https://api.push.apple.com", b"/3/device/...", headers, body)

Every request ends within its deadline (`timeout`), whatever the server does: the deadline covers waiting for
a connection, for a stream slot and for the answer, and the error says which it was. HTTP/2 goes over a pool
per origin (pool.py) of our own small asyncio protocols around h2's state machine (connection.py): TLS with
ALPN `h2` on https, prior knowledge (h2c) on http. An origin that turns out not to speak HTTP/2 is served by
httpx over HTTP/1.1 from then on (http1.py), unless `http1=False` (APNs speaks nothing else).

Tests inject a `Transport` (its settings: deadlines, TLS trust, limits) into the providers: the same class and
path as production, never a different client.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from typing import Any

from hpack import NeverIndexedHeaderTuple

from .errors import Http2Unsupported, ResponseTooLarge, TransportError, TransportTimeout
from .h2setup import Limits, Response
from .hpack_fast import Run, flatten
from .http1 import Http1
from .pool import Origin, Pool, PoolSettings, Ticket

__all__ = [
    "DEFAULT_TIMEOUT",
    "Http2Unsupported",
    "Limits",
    "PoolSettings",
    "Response",
    "ResponseTooLarge",
    "Run",
    "Transport",
    "TransportError",
    "TransportTimeout",
    "repeated",
    "volatile",
]

DEFAULT_TIMEOUT = 10.0


def repeated(headers: Sequence[tuple[bytes, bytes]]) -> Run:
    """Headers that go out together, unchanged, with request after request (a provider's token, topic,
    priority): passed as this same object each time, they are HPACK-encoded once while the table stands."""
    return Run(headers)


def volatile(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    """A header whose value changes with every request (an id): kept out of the HPACK table, where it would
    only evict the headers that repeat."""
    return tuple.__new__(NeverIndexedHeaderTuple, (name, value))  # its own __new__ is Python, per call


MAX_POOLS = 64  # origins with open connections (real deployments see a handful; Web Push a few dozen)


class Transport:
    """HTTP requests to push services, each finished within its deadline; safe to share between tasks."""

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        http1: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        settings: PoolSettings | None = None,
        service: str = "the push service",
    ) -> None:
        """`ssl_context` for https (default: the system's trust store; ALPN is set on it); `http1=False` turns
        the HTTP/1.1 fallback off; `service` names the far end in error messages."""
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout
        self.service = service
        self.settings = settings or PoolSettings(connect_timeout=timeout)
        self.alpn = ["h2", "http/1.1"] if http1 else ["h2"]
        self.http1_allowed = http1
        self._ssl_context = ssl_context
        self._given_ssl_context = ssl_context  # httpx gets its own default context unless one was given
        self._pools: dict[str, Pool] = {}
        self._http1: Http1 | None = None
        self._closing: set[asyncio.Task[None]] = set()

    async def request(
        self,
        origin: str,
        path: bytes,
        headers: Sequence[tuple[bytes, bytes] | Run],
        body: bytes,
        *,
        method: bytes = b"POST",
        within: float | None = None,
    ) -> Response:
        """Send one request to `origin` (scheme://host[:port]) and return the answer, whatever its status.

        `headers` are lower-case, without pseudo-headers; `volatile` marks those that change with every request,
        `repeated` groups those that go out together unchanged time after time (cheaper to encode). Raises
        TransportError (TransportTimeout when the deadline passed); `error.sent` is False when the server
        certainly did not process the request.
        """
        wait = self.timeout if within is None else within
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pool(origin)
        if pool.http1:
            return await self._request_http1(origin, path, headers, body, method, wait)
        # The pseudo-headers that vary (:path) before those that do not: the constant ones then form one run
        # with the caller's (hpack_fast.Encoder.compact); the order of pseudo-headers is free (RFC 9113 §8.3).
        full: list[Any] = [(b":method", method), volatile(b":path", path), pool.pseudo, *headers]
        loop = pool.loop
        ticket = Ticket()
        deadline = pool.deadlines.start(loop.time() + wait)  # asyncio.timeout_at, without a timer each
        try:
            return await pool.request(full, body, ticket)
        except asyncio.CancelledError:
            if not deadline.timed_out():
                raise
            waiting = ticket.waiting_for
            if waiting == "a connection" and pool.connections_opened:
                waiting = "a stream slot"  # connected meanwhile, but the server allowed no stream
            message = f"timeout: no answer from {self.service} in {wait:g} s (waiting for {waiting})"
            raise TransportTimeout(message, sent=ticket.sent) from None
        except Http2Unsupported:
            if not self.http1_allowed:
                raise
        finally:
            deadline.finish()
        return await self._request_http1(origin, path, headers, body, method, deadline.when - loop.time())

    def _pool(self, origin: str) -> Pool:
        parsed = Origin.parse(origin)
        if len(self._pools) >= MAX_POOLS:
            oldest = next(iter(self._pools))
            task = asyncio.get_running_loop().create_task(self._pools.pop(oldest).aclose())
            self._closing.add(task)  # keep a reference until it has run
            task.add_done_callback(self._closing.discard)
        context = None
        if parsed.scheme == "https":
            if self._ssl_context is None:
                # Built once: loading the system trust store takes milliseconds.
                self._ssl_context = ssl.create_default_context()
            context = self._ssl_context
        pool = self._pools[origin] = Pool(parsed, self.settings, context, self.alpn)
        return pool

    async def _request_http1(
        self,
        origin: str,
        path: bytes,
        headers: Sequence[tuple[bytes, bytes] | Run],
        body: bytes,
        method: bytes,
        wait: float,
    ) -> Response:
        if self._http1 is None:
            self._http1 = Http1(
                timeout=self.timeout,
                max_connections=self.settings.max_connections * 5,  # no multiplexing: a few more
                max_body=self.settings.limits.max_body,
                ssl_context=self._given_ssl_context,
            )
        if wait <= 0:
            raise TransportTimeout(f"timeout: no answer from {self.service} in time", sent=False)
        try:
            async with asyncio.timeout(wait):
                return await self._http1.request(
                    method, origin + path.decode(), flatten(headers), body, within=wait
                )
        except TimeoutError:
            raise TransportTimeout(
                f"timeout: no answer from {self.service} over HTTP/1.1", sent=True
            ) from None

    def speaks_http2(self, origin: str) -> bool | None:
        """Whether the origin was found to speak HTTP/2 (None: not known yet)."""
        pool = self._pools.get(origin)
        if pool is None or (not pool.http1 and not pool.connections_opened):
            return None
        return not pool.http1

    @property
    def connections_opened(self) -> int:
        """HTTP/2 connections opened so far, over all origins."""
        return sum(pool.connections_opened for pool in self._pools.values())

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()
        if self._http1 is not None:
            await self._http1.aclose()
            self._http1 = None
