"""A stand-in hub for the dashboard: the routes of docs/dashboard-api.md, answering the documented examples.

It exists until the real routes do, so the dashboard can be opened and driven (by hand or by Playwright) today.
It is kept in tests/ and is not shipped. The canned answers are the JSON blocks tagged `dashboard-api:<name>` in
the document, so the stub and the contract cannot drift. `POST /v1/admin/test-event` makes the numbers move: it
bumps the counters and sends `published` (and, for a push, `delivery`) frames on the feed.

    .venv/bin/python -m tests.clients.dashboard_stub --port 8765 --prefix /hub
    # then open http://127.0.0.1:8765/hub/dashboard/ and sign in with the printed token
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import json
import re
import textwrap
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "dashboard-api.md"
STATIC = ROOT / "src" / "tidings" / "static" / "dashboard"
CLIENT = ROOT / "clients" / "js"
FEED_BUFFER = 256  # frames queued per feed before the stub drops it (the hub's buffers are bounded too)
STATS_EVERY = 1.0
_TYPE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")  # the hub's TYPE_PATTERN
_EXAMPLE = re.compile(r"^([ \t]*)```json dashboard-api:(\S+)\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def examples(text: str | None = None) -> dict[str, Any]:
    """Every `dashboard-api:<name>` JSON block of docs/dashboard-api.md, by name."""
    source = DOC.read_text() if text is None else text
    out: dict[str, Any] = {}
    for match in _EXAMPLE.finditer(source):
        out[match.group(2)] = json.loads(textwrap.dedent(match.group(3)))
    return out


def fake_jwt(claims: dict[str, Any]) -> str:
    """JWT-shaped, unsigned: the stub compares whole strings, the dashboard only reads the payload."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.stub"


ADMIN_TOKEN = fake_jwt({"sub": "stub-admin", "roles": ["admin"], "exp": 4_102_444_800})
USER_TOKEN = fake_jwt({"sub": "alice", "roles": [], "exp": 4_102_444_800})


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": code, "message": message, "field": field}, status, headers=headers)


class Stub:
    """The stub's state: counters, recorded deliveries, open feed connections."""

    def __init__(self, *, dev_login: bool = True) -> None:
        self.examples = examples()
        self.stats = copy.deepcopy(self.examples["stats"])
        self.deliveries: list[dict[str, Any]] = list(self.examples["deliveries"]["deliveries"])
        self.feeds: set[asyncio.Queue[bytes | None]] = set()
        self.dev_login = dev_login
        self.seq = 0

    def admin(self, request: Request) -> Response | None:
        auth = request.headers.get("authorization", "")
        token = (
            auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else request.query_params.get("token")
        )
        if token == ADMIN_TOKEN:
            return None
        if token == USER_TOKEN:
            return _error(403, "forbidden", "this endpoint requires the role 'admin'")
        return _error(401, "unauthorized", "missing or invalid token")

    def broadcast(self, event: str, data: dict[str, Any]) -> None:
        frame = f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
        for queue in list(self.feeds):
            if queue.full():  # a feed that does not read is cut off, never buffered without bound
                self.feeds.discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)
            else:
                queue.put_nowait(frame)

    def snapshot(self) -> dict[str, Any]:
        self.stats["at"] = _now_iso()
        self.stats["connections"]["by_role"]["admin"] = len(self.feeds)
        self.stats["connections"]["total"] = sum(self.stats["connections"]["by_role"].values())
        return self.stats

    def publish(self, body: dict[str, Any]) -> list[str]:
        self.seq += 1
        event_id = f"{int(time.time() * 1000)}-{self.seq}"
        to = body["to"]
        users = list(to.get("users", []))
        push = body.get("push")
        mode = push if isinstance(push, str) or push is None else push.get("mode", "silent")
        self.stats["events"]["published_total"] += 1
        self.broadcast(
            "published",
            {
                "id": event_id,
                "type": body["type"],
                "occurred_at": _now_iso(),
                "to": {
                    "users": users[:20],
                    "users_total": len(users),
                    "roles": list(to.get("roles", [])),
                    "topics": list(to.get("topics", [])),
                    "broadcast": bool(to.get("broadcast")),
                },
                "push": mode,
                "data_bytes": len(json.dumps(body.get("data", {}), separators=(",", ":"))),
                "recipients": 1,
            },
        )
        if mode is not None:
            row = dict(self.examples["feed-delivery"], event_id=event_id, user_id=(users or [None])[0])
            row.update(outcome="delivered", reason="", status=200, latency_ms=12.5, created_at=_now_iso())
            self.deliveries.insert(0, row)
            apns = self.stats["push"]["by_provider"].setdefault("apns", {})
            apns["delivered"] = apns.get("delivered", 0) + 1
            self.broadcast("delivery", row)
        return [event_id]

    # --- routes (docs/dashboard-api.md) ---------------------------------------------------------------------

    async def config(self, request: Request) -> Response:
        return JSONResponse(dict(self.examples["config"], dev_login=self.dev_login))

    async def dev_token(self, request: Request) -> Response:
        if not self.dev_login:
            return _error(404, "not_found", "no such route")
        return JSONResponse(dict(self.examples["dev-token"], token=ADMIN_TOKEN, user_id="stub-admin"))

    async def stats_route(self, request: Request) -> Response:
        return self.admin(request) or JSONResponse(self.snapshot())

    async def deliveries_route(self, request: Request) -> Response:
        if refused := self.admin(request):
            return refused
        user, event = request.query_params.get("user_id"), request.query_params.get("event_id")
        limit = int(request.query_params.get("limit", "100"))
        rows = [
            d
            for d in self.deliveries
            if (user is None or d["user_id"] == user) and (event is None or d["event_id"] == event)
        ]
        return JSONResponse({"deliveries": rows[:limit]})

    async def devices(self, request: Request) -> Response:
        if refused := self.admin(request):
            return refused
        user = request.query_params.get("user_id")
        rows = [d for d in self.examples["devices"]["devices"] if user is None or d["user_id"] == user]
        return JSONResponse({"devices": rows, "next_cursor": None})

    async def presence(self, request: Request) -> Response:
        if refused := self.admin(request):
            return refused
        user = request.query_params.get("user_id", "")
        if user == self.examples["presence"]["user_id"]:
            return JSONResponse(self.examples["presence"])
        return JSONResponse({"user_id": user, "online": False, "scope": "process", "connections": []})

    async def test_event(self, request: Request) -> Response:
        if refused := self.admin(request):
            return refused
        body = await request.json()
        if not isinstance(body, dict) or not _TYPE.fullmatch(body.get("type", "")):
            return _error(422, "validation_error", "a dotted lowercase name", field="type")
        if not isinstance(body.get("to"), dict) or not any(body["to"].values()):
            return _error(422, "validation_error", "users, roles, topics or broadcast", field="to")
        return JSONResponse({"ids": self.publish(body)}, 202)

    async def feed(self, request: Request) -> Response:
        if refused := self.admin(request):
            return refused
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(FEED_BUFFER)
        self.feeds.add(queue)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(self._frames(queue), media_type="text/event-stream", headers=headers)

    async def _frames(self, queue: asyncio.Queue[bytes | None]) -> AsyncIterator[bytes]:
        try:
            yield b"retry: 1000\n:ok\n\n"
            while True:
                try:
                    async with asyncio.timeout(STATS_EVERY):
                        frame = await queue.get()
                except TimeoutError:
                    stats = json.dumps(self.snapshot(), separators=(",", ":"))
                    frame = f"event: stats\ndata: {stats}\n\n".encode()
                if frame is None:
                    return
                yield frame
        finally:
            self.feeds.discard(queue)


async def _readyz(request: Request) -> Response:
    return JSONResponse({"ready": True, "checks": {"bus": True, "database": True, "worker": True}})


def _script(name: str) -> Any:
    async def serve(request: Request) -> Response:
        return FileResponse(CLIENT / name, media_type="text/javascript; charset=utf-8")

    return serve


def build_app(*, prefix: str = "", dev_login: bool = True) -> Starlette:
    stub = Stub(dev_login=dev_login)

    async def to_dashboard(request: Request) -> Response:
        return RedirectResponse(f"{prefix}/dashboard/", 307)

    routes = [
        Route("/dashboard", to_dashboard),
        Mount("/dashboard", StaticFiles(directory=STATIC, html=True)),
        Route("/v1/client.js", _script("tidings.js")),
        Route("/v1/sw.js", _script("sw.js")),
        Route("/v1/dashboard/config", stub.config),
        Route("/v1/admin/dev-token", stub.dev_token, methods=["POST"]),
        Route("/v1/admin/stats", stub.stats_route),
        Route("/v1/admin/deliveries", stub.deliveries_route),
        Route("/v1/admin/devices", stub.devices),
        Route("/v1/admin/presence", stub.presence),
        Route("/v1/admin/test-event", stub.test_event, methods=["POST"]),
        Route("/v1/admin/feed", stub.feed),
        Route("/readyz", _readyz),
    ]
    app = Starlette(routes=[Mount(prefix, routes=routes)] if prefix else routes)
    app.state.stub = stub
    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--prefix", default="", help="mount everything under this path, e.g. /hub")
    args = parser.parse_args()
    print(f"dashboard: http://127.0.0.1:{args.port}{args.prefix}/dashboard/\nadmin token: {ADMIN_TOKEN}")
    uvicorn.run(build_app(prefix=args.prefix), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
