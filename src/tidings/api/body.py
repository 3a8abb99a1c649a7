"""Request bodies: every JSON body the API reads comes through `read_json` — bounded, strict, unambiguous.

Deliberate choices:
- Bodies are read by hand after authentication (never by FastAPI before it), so an anonymous client cannot make
  the server read or parse one, and a body larger than the route's limit is refused without being read whole.
- A key given twice in one object is refused (400 `duplicate_key`). JSON parsers keep the last one, so
  `"to": {"users": [...]}` followed by `"to": {"broadcast": true}` would silently become a broadcast.
- orjson parses the value we use (strict UTF-8, no NaN, numbers that fit 64 bits or a double, nesting ≤ 1024);
  jiter makes a second linear pass over the same bytes only to find duplicate keys, nesting ≤ 200 (measured:
  ~2 µs for a typical event, ~2.5 ms for a 390 KB batch; orjson alone takes ~1.7 µs / ~1.3 ms).
"""

from __future__ import annotations

from typing import Any

import jiter
import orjson
from starlette.requests import Request

from ..errors import ApiError


async def read_json(request: Request, *, limit: int) -> Any:
    """The request's JSON body, refusing more than `limit` bytes without reading them all."""
    content_type = request.headers.get("content-type", "application/json")
    if "json" not in content_type:
        raise ApiError(415, "unsupported_media_type", "send Content-Type: application/json")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", f"the body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "too_large", f"the body is larger than {limit} bytes")
    return parse_json(bytes(body))


def parse_json(body: bytes) -> Any:
    """One JSON document; ApiError 400 if it is malformed or an object in it names a key twice."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from exc
    try:
        jiter.from_json(body, catch_duplicate_keys=True, cache_mode="none")
    except ValueError as exc:
        message = str(exc)
        if message.startswith("Detected duplicate key"):
            raise ApiError(400, "duplicate_key", f"the body is ambiguous: {message}") from exc
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {message}") from exc
    return value
