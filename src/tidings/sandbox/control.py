"""What every sandbox shares: failure rules, the record of what was received, and the HTTP control routes.

Control API (plain HTTP/1.1 JSON, same on every sandbox's control URL):
    GET    /_sandbox/records[?token=T]   what was received, oldest first: {"records": [...]}
    DELETE /_sandbox/records             forget it
    POST   /_sandbox/rules               {"token": T | "*", "status": 410, "reason": "Unregistered",
                                          "retry_after": 30, "delay": 2.5, "times": 1} (or a list of them)
    DELETE /_sandbox/rules               answer normally again
A rule answers `status`/`reason` (FCM: `reason` is the errorCode) for `token`, after waiting `delay` seconds;
`times` limits how often it fires (default: until deleted). `status: 200` with a delay is a slow success.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

MAX_RECORDS = 10_000


@dataclass(slots=True)
class Rule:
    token: str
    status: int = 200
    reason: str = ""
    retry_after: str | None = None
    delay: float = 0.0
    times: int | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Rule:
        retry_after = body.get("retry_after")
        return cls(
            token=str(body["token"]),
            status=int(body.get("status", 200)),
            reason=str(body.get("reason", "")),
            retry_after=None if retry_after is None else str(retry_after),
            delay=float(body.get("delay", 0)),
            times=None if body.get("times") is None else int(body["times"]),
        )


class SandboxState:
    """Rules and records of one sandbox, plus a stop signal that ends delayed answers early."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.rules: dict[str, Rule] = {}
        self.records: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDS)
        self.stopping = asyncio.Event()

    def add_rule(self, rule: Rule) -> None:
        self.rules[rule.token] = rule

    def match(self, token: str) -> Rule | None:
        rule = self.rules.get(token) or self.rules.get("*")
        if rule is None:
            return None
        if rule.times is not None:
            rule.times -= 1
            if rule.times <= 0:
                self.rules.pop(rule.token, None)
        return rule

    def record(self, entry: dict[str, Any]) -> None:
        entry.setdefault("at", self.clock())
        self.records.append(entry)

    async def pause(self, seconds: float) -> None:
        """A slow answer: wait, but never past the sandbox's stop."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), seconds)


def control_routes(state: SandboxState) -> list[Route]:
    async def records(request: Request) -> Response:
        if request.method == "DELETE":
            state.records.clear()
            return JSONResponse({"records": []})
        token = request.query_params.get("token")
        found = [r for r in state.records if token is None or r.get("token") == token]
        return JSONResponse({"records": found})

    async def rules(request: Request) -> Response:
        if request.method == "DELETE":
            state.rules.clear()
        elif request.method == "POST":
            body = await request.json()
            try:
                for item in body if isinstance(body, list) else [body]:
                    state.add_rule(Rule.from_json(item))
            except (KeyError, TypeError, ValueError) as exc:
                return JSONResponse({"error": "bad_rule", "message": str(exc)}, status_code=400)
        return JSONResponse({"rules": [asdict(rule) for rule in state.rules.values()]})

    return [
        Route("/_sandbox/records", records, methods=["GET", "DELETE"]),
        Route("/_sandbox/rules", rules, methods=["GET", "POST", "DELETE"]),
    ]
