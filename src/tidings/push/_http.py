"""What the three providers share about HTTP: Retry-After, network errors as results, the client factory."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import httpx

from .base import Outcome, Result

DEFAULT_TIMEOUT = 10.0


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - now)


def network_failure(exc: httpx.HTTPError) -> Result:
    """Timeouts and broken connections are transient: the worker retries with backoff."""
    if isinstance(exc, httpx.TimeoutException):
        return Result(Outcome.retry_later, f"timeout: {type(exc).__name__}")
    return Result(Outcome.retry_later, f"network: {type(exc).__name__}: {exc}"[:300])


def make_client(
    *,
    http2_only: bool,
    timeout: float,
    transport: httpx.AsyncBaseTransport | None,
    max_connections: int = 100,
) -> httpx.AsyncClient:
    """One pooled client per provider.

    `http2_only` turns off HTTP/1.1 so that httpcore speaks HTTP/2 with prior knowledge on `http://` URLs
    (h2c, the sandbox) and offers only `h2` in ALPN on `https://` (APNs speaks nothing else).
    """
    return httpx.AsyncClient(
        http1=not http2_only,
        http2=True,
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        transport=transport,
        follow_redirects=False,
    )
