"""The ceiling: the least Python a correct SSE fan-out can run per delivery.

An ``asyncio.Protocol`` HTTP/1.1 server (uvloop when installed): each event is JSON-encoded and framed once,
wrapped once in its HTTP chunk, and the same bytes are written straight to every recipient's transport. No
task, queue or generator per connection; a connection is one small object in a few index sets. A publish batch
whose events share one audience is joined into a single write per connection. Slow consumers whose kernel
buffer backs up past ``MAX_BUFFER`` are dropped rather than buffered without bound.

It verifies the JWT (PyJWT, as tidings does) and the publish key, but validates publish bodies only as far as
routing needs. Run: ``python -m bench.baselines.ceiling --port 8001``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import jwt
import orjson

from bench.protocol import JWT_SECRET, PREAMBLE, PUBLISH_KEY

MAX_BUFFER = 1 << 20
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"x-accel-buffering: no\r\nx-reconnect-delay: 3000\r\ntransfer-encoding: chunked\r\n\r\n"
)


def chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk; done once per event, not per recipient."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def response(status: str, body: bytes, ctype: bytes = b"application/json") -> bytes:
    return b"HTTP/1.1 %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s" % (
        status.encode(),
        ctype,
        len(body),
        body,
    )


class Hub:
    """The routing index: user/role/topic -> set of transports, plus everyone for broadcast."""

    def __init__(self) -> None:
        self.all: set[asyncio.Transport] = set()
        self.users: dict[str, set[asyncio.Transport]] = defaultdict(set)
        self.roles: dict[str, set[asyncio.Transport]] = defaultdict(set)
        self.topics: dict[str, set[asyncio.Transport]] = defaultdict(set)
        self.ids = itertools.count(1)

    def keys(self, user: str, roles: list[str], topics: list[str]) -> list[set[asyncio.Transport]]:
        return [self.users[user], *(self.roles[r] for r in roles), *(self.topics[t] for t in topics)]

    def recipients(self, to: dict[str, Any]) -> set[asyncio.Transport] | frozenset[asyncio.Transport]:
        if to.get("broadcast"):
            return self.all
        sets = [self.users.get(u) for u in to.get("users", ())]
        sets += [self.roles.get(r) for r in to.get("roles", ())]
        sets += [self.topics.get(t) for t in to.get("topics", ())]
        found = [s for s in sets if s]
        if len(found) == 1:
            return found[0]
        return frozenset().union(*found)

    def publish(self, events: list[dict[str, Any]]) -> list[str]:
        """Encode each event once and write it to its recipients; one write per connection per batch."""
        now = datetime.now(UTC).isoformat()
        encoded: list[tuple[bytes, bytes, Any]] = []
        for ev in events:
            eid = str(next(self.ids))
            body = orjson.dumps({"id": eid, "type": ev["type"], "data": ev["data"], "occurred_at": now})
            frame = b"id: %s\nevent: %s\ndata: %s\n\n" % (eid.encode(), ev["type"].encode(), body)
            encoded.append((eid.encode(), chunk(frame), ev["to"]))
        first_to = encoded[0][2] if encoded else None
        if all(to == first_to for _, _, to in encoded):
            self._write(self.recipients(first_to or {}), b"".join(c for _, c, _ in encoded))
        else:
            pending: dict[asyncio.Transport, list[bytes]] = {}
            for _, c, to in encoded:
                for t in self.recipients(to):
                    pending.setdefault(t, []).append(c)
            for t, chunks in pending.items():
                self._write((t,), b"".join(chunks))
        return [eid.decode() for eid, _, _ in encoded]

    @staticmethod
    def _write(transports: Any, data: bytes) -> None:
        for t in tuple(transports):
            if t.get_write_buffer_size() > MAX_BUFFER:
                t.abort()
            else:
                t.write(data)


class HttpProtocol(asyncio.Protocol):
    """Minimal HTTP/1.1: keep-alive request/response for publish and health, or a long-lived SSE stream."""

    __slots__ = ("buf", "hub", "streams", "transport")

    transport: asyncio.Transport

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.buf = b""
        self.streams: list[set[asyncio.Transport]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        if self.streams is not None:
            for s in self.streams:
                s.discard(self.transport)
            self.hub.all.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        if self.streams is not None:
            return  # a stream's client has nothing more to say
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1").split("\r\n")
            method, target, _ = head[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
            length = int(headers.get("content-length", "0"))
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4 : end + 4 + length]
            self.buf = self.buf[end + 4 + length :]
            self.handle(method, target, headers, body)
            if self.streams is not None:
                return

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        url = urlsplit(target)
        if method == "GET" and url.path == "/healthz":
            self.transport.write(response("200 OK", b'{"status":"ok"}'))
        elif method == "GET" and url.path == "/v1/events":
            self.open_stream(parse_qs(url.query))
        elif method == "POST" and url.path == "/v1/publish":
            if headers.get("authorization") != f"Bearer {PUBLISH_KEY}":
                self.transport.write(response("401 Unauthorized", b'{"error":"unauthorized"}'))
                return
            payload = orjson.loads(body)
            ids = self.hub.publish(payload if isinstance(payload, list) else [payload])
            self.transport.write(response("202 Accepted", orjson.dumps({"ids": ids})))
        else:
            self.transport.write(response("404 Not Found", b'{"error":"not_found"}'))

    def open_stream(self, query: dict[str, list[str]]) -> None:
        try:
            claims = jwt.decode(query.get("token", [""])[0], JWT_SECRET, algorithms=["HS256"])
        except jwt.PyJWTError:
            self.transport.write(response("401 Unauthorized", b'{"error":"unauthorized"}'))
            self.transport.close()
            return
        topics = [t for t in query.get("topics", [""])[0].split(",") if t]
        self.streams = self.hub.keys(str(claims["sub"]), list(claims.get("roles", [])), topics)
        for s in self.streams:
            s.add(self.transport)
        self.hub.all.add(self.transport)
        self.transport.write(STREAM_HEAD + chunk(PREAMBLE.encode()))


async def serve(host: str, port: int, backlog: int) -> None:
    hub = Hub()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpProtocol(hub), host, port, backlog=backlog)
    gc.freeze()  # start-up objects never need scanning again
    async with server:
        await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--backlog", type=int, default=4096)
    args = p.parse_args()
    try:
        import uvloop

        uvloop.run(serve(args.host, args.port, args.backlog))
    except ImportError:
        asyncio.run(serve(args.host, args.port, args.backlog))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
