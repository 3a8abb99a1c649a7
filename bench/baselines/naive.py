"""The naive baseline: the tutorial design tidings must beat by a wide margin.

FastAPI + sse-starlette, one ``asyncio.Queue`` per client, the event put into every recipient's queue and
JSON-encoded again by every client's generator, as most "SSE with FastAPI" tutorials do. It is deliberately
not optimised — it exists to show what the convenient way costs — but it is correct: it authenticates the JWT,
validates publishes with pydantic and speaks tidings' wire format.

Run: ``python -m uvicorn bench.baselines.naive:app --backlog 4096 --no-access-log``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import jwt
from fastapi import FastAPI, Header, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette.sse import EventSourceResponse

from bench.protocol import JWT_SECRET, PREAMBLE, PUBLISH_KEY


class Audience(BaseModel):
    model_config = ConfigDict(extra="forbid")
    users: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)
    topics: list[str] = Field(default_factory=list)
    broadcast: bool = False


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str
    data: dict[str, Any]
    to: Audience


class Client:
    """One connected stream: its queue and what it listens to."""

    def __init__(self, user: str, roles: list[str], topics: list[str]) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.user, self.roles, self.topics = user, roles, topics


app = FastAPI()
clients: set[Client] = set()
by_user: dict[str, set[Client]] = defaultdict(set)
by_role: dict[str, set[Client]] = defaultdict(set)
by_topic: dict[str, set[Client]] = defaultdict(set)
ids = itertools.count(1)


def _register(c: Client) -> None:
    clients.add(c)
    by_user[c.user].add(c)
    for r in c.roles:
        by_role[r].add(c)
    for t in c.topics:
        by_topic[t].add(c)


def _unregister(c: Client) -> None:
    clients.discard(c)
    by_user[c.user].discard(c)
    for r in c.roles:
        by_role[r].discard(c)
    for t in c.topics:
        by_topic[t].discard(c)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/v1/events")
async def events(request: Request, token: str = Query(), topics: str = Query("")) -> EventSourceResponse:
    try:
        claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"])
    except jwt.PyJWTError as exc:
        raise HTTPException(401, "invalid token") from exc
    client = Client(str(claims["sub"]), list(claims.get("roles", [])), [t for t in topics.split(",") if t])
    _register(client)

    async def stream() -> AsyncIterator[Any]:
        try:
            yield PREAMBLE.encode()
            while True:
                event = await client.queue.get()
                yield {"id": event["id"], "event": event["type"], "data": json.dumps(event)}
        finally:
            _unregister(client)

    return EventSourceResponse(stream(), ping=30, sep="\n", headers={"X-Accel-Buffering": "no"})


@app.post("/v1/publish", status_code=202)
async def publish(body: EventIn | list[EventIn], authorization: str = Header("")) -> dict[str, list[str]]:
    if authorization != f"Bearer {PUBLISH_KEY}":
        raise HTTPException(401, "bad publish key")
    batch = body if isinstance(body, list) else [body]
    out: list[str] = []
    for ev in batch:
        event: dict[str, Any] = {
            "id": str(next(ids)),
            "type": ev.type,
            "data": ev.data,
            "occurred_at": datetime.now(UTC).isoformat(),
        }
        recipients: set[Client] = set(clients) if ev.to.broadcast else set()
        for u in ev.to.users:
            recipients |= by_user.get(u, set())
        for r in ev.to.roles:
            recipients |= by_role.get(r, set())
        for t in ev.to.topics:
            recipients |= by_topic.get(t, set())
        for c in recipients:
            c.queue.put_nowait(event)
        out.append(event["id"])
    return {"ids": out}
