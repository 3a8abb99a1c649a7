"""The wire protocol every system under test speaks, in one place.

tidings, the naive baseline and the ceiling all implement the same HTTP API so that one load generator
measures all three. Keeping the constants here (secret, key, event type, frame layout) means a change to
tidings' protocol is a one-file change for the bench.
"""

from __future__ import annotations

import re
import time
from typing import Any

import jwt

JWT_SECRET = "bench-secret-not-for-production-0123456789abcdef"
PUBLISH_KEY = "bench-publish-key-0123456789"
EVENT_TYPE = "bench.tick"
TOPIC = "bench"
RETRY_MS = 3000

# Latency is carried in the event payload: data = {"t": <time.time_ns() at publish>}. The generator finds
# it with one C-level regex pass over each complete chunk of frames instead of decoding JSON per frame.
T_RE = re.compile(rb'"t":\s*(\d+)')


def mint_token(user_id: str, roles: tuple[str, ...] = (), ttl: float = 3600.0) -> str:
    """An HS256 JWT with ``sub`` = user id, as the application would hand its browsers."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + int(ttl)}
    if roles:
        claims["roles"] = list(roles)
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def stream_request(host: str, port: int, topics: str, token: str) -> bytes:
    """The raw HTTP/1.1 request that opens one SSE stream (what EventSource sends, minus cookies)."""
    return (
        f"GET /v1/events?topics={topics}&token={token} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    ).encode()


def publish_request(host: str, port: int, body: bytes, key: str = PUBLISH_KEY) -> bytes:
    """A keep-alive ``POST /v1/publish`` carrying one event or a JSON list of events."""
    return (
        f"POST /v1/publish HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def sse_frame(event_id: str, event_type: str, data_json: str) -> str:
    """One SSE frame exactly as tidings writes it (single-line JSON data, ``\\n`` separators)."""
    return f"id: {event_id}\nevent: {event_type}\ndata: {data_json}\n\n"


PREAMBLE = f"retry: {RETRY_MS}\n:ok\n\n"
