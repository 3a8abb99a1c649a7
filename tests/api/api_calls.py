"""Helpers for the API tests: every authenticated route (read from the app's own OpenAPI document, so a new
route is covered without editing a list), hand-made JWTs, and requests that never hang on a stream."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

import httpx

from support import SECRET, app_of
from tidings import Hub

DEVICE = {"provider": "fcm", "platform": "android", "token": "fcm-token-1"}
BODIES: dict[str, Any] = {
    "/v1/publish": {"type": "order.created", "to": {"users": ["alice"]}},
    "/v1/sessions/revoke": {"user_id": "alice"},
    "/v1/devices": DEVICE,
    "/v1/devices/register": DEVICE,
}
PATH_PARAMETERS = {"{device_id}": "0" * 32}


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    scheme: str  # "user", "publisher" or "metrics"

    @property
    def url(self) -> str:
        url = self.path
        for name, value in PATH_PARAMETERS.items():
            url = url.replace(name, value)
        return url + ("?token=x" if (self.method, self.path) == ("DELETE", "/v1/devices") else "")

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def authenticated_routes(hub: Hub) -> list[Route]:
    """Every route the OpenAPI document says needs a user's or publisher's credential."""
    document = app_of(hub).app.openapi()
    routes = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for requirement in operation.get("security", []):
                scheme = next(iter(requirement))
                if scheme in ("user", "publisher"):
                    routes.append(Route(method.upper(), path, scheme))
    return routes


def signed(payload: str | dict[str, Any], secret: str = SECRET) -> str:
    """An HS256 JWT over exactly this payload text (NaN, Infinity and 10**400 included), validly signed."""
    text = (
        payload if isinstance(payload, str) else json.dumps(payload)
    )  # ASCII: a surrogate is written as its escape
    head = _b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + _b64(text.encode())
    signature = hmac.new(secret.encode(), head, hashlib.sha256).digest()
    return (head + b"." + _b64(signature)).decode()


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


async def call(client: httpx.AsyncClient, route: Route, token: str, **kwargs: Any) -> tuple[int, Any]:
    """(status, JSON body) of one request with `token` as its bearer; a stream is closed once it answers 200."""
    body = BODIES.get(route.path) if route.method == "POST" else None
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    async with client.stream(route.method, route.url, json=body, headers=headers, **kwargs) as response:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return response.status_code, None
        await response.aread()
        is_json = response.headers.get("content-type", "").startswith("application/json")
        return response.status_code, response.json() if is_json else response.text
