"""HTTP/1.1 for origins that do not speak HTTP/2 (some Web Push services, proxies, local servers), via httpx.

httpx's own pool is safe under concurrency; nothing of ours is shared between requests here. Answers are read
as a stream so that the body bound holds (httpx would otherwise buffer whatever the server sends), and
httpx's errors become ours, with `sent` telling whether the request may have reached the server.
"""

from __future__ import annotations

import ssl

import httpx

from .errors import ResponseTooLarge, TransportError, TransportTimeout
from .h2setup import Headers, Response

NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class Http1:
    def __init__(
        self, *, timeout: float, max_connections: int, max_body: int, ssl_context: ssl.SSLContext | None
    ) -> None:
        self.max_body = max_body
        self.client = httpx.AsyncClient(
            http1=True,
            http2=False,
            verify=ssl_context if ssl_context is not None else True,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
        )

    async def request(
        self, method: bytes, url: str, headers: Headers, body: bytes, *, within: float
    ) -> Response:
        """One request within `within` seconds (the caller's deadline also wraps it)."""
        request = self.client.build_request(
            method.decode(), url, headers=headers, content=body, timeout=httpx.Timeout(within)
        )
        try:
            response = await self.client.send(request, stream=True)
            try:
                content = bytearray()
                async for chunk in response.aiter_bytes():
                    content += chunk
                    if len(content) > self.max_body:
                        raise ResponseTooLarge(f"response body over {self.max_body} bytes")
            finally:
                await response.aclose()
        except NOT_SENT as exc:
            raise TransportError(f"cannot connect: {type(exc).__name__}: {exc}"[:300], sent=False) from exc
        except httpx.TimeoutException as exc:
            raise TransportTimeout(
                f"no answer in time over HTTP/1.1 ({type(exc).__name__})", sent=True
            ) from exc
        except httpx.HTTPError as exc:
            raise TransportError(f"HTTP/1.1: {type(exc).__name__}: {exc}"[:300], sent=True) from exc
        headers = [(name.lower(), value) for name, value in response.headers.raw]
        return Response(response.status_code, headers, bytes(content))

    async def aclose(self) -> None:
        await self.client.aclose()
