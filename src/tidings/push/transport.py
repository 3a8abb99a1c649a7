"""POST over our HTTP/2 client first, over httpx (HTTP/1.1) for origins that turn out not to speak HTTP/2.

FCM and the big Web Push services speak HTTP/2; local servers and some push services only HTTP/1.1. The
first request to an origin tries HTTP/2 (ALPN on https, prior knowledge on http); an origin that refuses is
remembered and served by httpx from then on. With an injected httpx client or transport everything goes
through httpx (unit tests with MockTransport).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from ._http import network_failure
from .base import Outcome, Result
from .h2client import H2Error, H2Unsupported
from .h2pool import Pool

MAX_POOLS = 64  # origins with an open HTTP/2 connection (real deployments see a handful)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    retry_after: str | None


class Http2First:
    def __init__(self, client: httpx.AsyncClient, *, use_h2: bool, timeout: float, service: str) -> None:
        self.client = client
        self.use_h2 = use_h2
        self.timeout = timeout
        self.service = service  # named in timeout reasons
        self.pools: dict[str, Pool] = {}
        self.http1_origins: set[str] = set()

    async def post(
        self, origin: str, path: bytes, h2_headers: bytes, headers: Mapping[str, str], body: bytes
    ) -> Answer | Result:
        """An answer, or the retry_later Result for a timeout or a network failure."""
        if self.use_h2 and origin not in self.http1_origins:
            answer = await self._post_h2(origin, path, h2_headers, body)
            if answer is not None:
                return answer
        try:
            response = await self.client.post(origin + path.decode(), content=body, headers=headers)
        except httpx.HTTPError as exc:
            return network_failure(exc)
        return Answer(response.status_code, response.content, response.headers.get("retry-after"))

    async def _post_h2(self, origin: str, path: bytes, headers: bytes, body: bytes) -> Answer | Result | None:
        pool = self.pools.get(origin)
        if pool is None:
            if len(self.pools) >= MAX_POOLS:
                await self.pools.pop(next(iter(self.pools))).aclose()
            pool = self.pools[origin] = Pool(origin, connect_timeout=self.timeout)
        for attempt in (1, 2):
            try:
                response = await pool.request(path, headers, body, self.timeout)
            except H2Unsupported:
                self.http1_origins.add(origin)
                await self.pools.pop(origin).aclose()
                return None
            except H2Error as exc:
                # Retryable: the server certainly did not process it (GOAWAY, REFUSED_STREAM): resend once.
                if attempt == 2 or not exc.retryable:
                    return Result(Outcome.retry_later, f"network: {exc}"[:300])
            except TimeoutError:
                return Result(Outcome.retry_later, f"timeout: no response from {self.service}")
            except OSError as exc:
                return Result(Outcome.retry_later, f"network: {type(exc).__name__}: {exc}"[:300])
            else:
                retry_after = response.header(b"retry-after")
                return Answer(response.status, response.body, retry_after.decode() if retry_after else None)
        raise AssertionError("unreachable")

    @property
    def connections_opened(self) -> int:
        return sum(pool.connections_opened for pool in self.pools.values())

    async def aclose(self) -> None:
        await self.client.aclose()
        for pool in self.pools.values():
            await pool.aclose()
