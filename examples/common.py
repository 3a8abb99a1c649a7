"""What the three example apps share, none of it tidings-specific: the signed-in user from the app's own JWT,
a development-only token route for the example pages, device registration with the hub's rules, and pages
served under a strict Content-Security-Policy.

The apps are tidings' seed apps as their teams would adopt it: their routes and payloads stay as they are (their
clients are in the field), and tidings is mounted under `/hub` so none of its routes can shadow one of theirs.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from tidings import Hub, Principal
from tidings.auth import bearer_token, mint_token
from tidings.push.endpoints import EndpointPolicy
from tidings.registry.store import Device
from tidings.registry.validation import DeviceIn, PolicyViolation, check_policy

HUB_PREFIX = "/hub"  # the hub's own HTTP API (/hub/v1/..., /hub/v1/client.js, /hub/dashboard)
DEV_TOKEN_SECONDS = 600


def current_user(hub: Hub) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the caller of the app's routes, from the same JWT the app already issues (the hub
    verifies it: signature, expiry, revocation). A missing or bad token is a JSON 401."""

    async def user(request: Request) -> Principal:
        return await hub.authenticate(bearer_token(request.headers.get("authorization")))

    return user


def dev_token(hub: Hub, user_id: str, roles: list[str]) -> dict[str, str]:
    """A short-lived token for the example pages. A real app checks its own session before minting; this one
    trusts everyone, which is why it exists in development mode only (the hub's generated secret signs it)."""
    secret = hub.settings.jwt_secret
    if not hub.settings.is_development or not secret:
        raise HTTPException(404, "the example's token route exists in development mode only")
    return {"token": mint_token(secret, user_id, roles, ttl=DEV_TOKEN_SECONDS)}


async def register_device(
    hub: Hub, user: Principal, fields: Mapping[str, Any], *, renamed: Mapping[str, str] | None = None
) -> tuple[Device, bool]:
    """Register a push target with the hub's own rules (token formats, Web Push host policy), reporting a bad
    field by the app's name for it (`renamed`: the hub's field -> the app's). Returns (device, created)."""
    names = dict(renamed or {})

    def loc(path: tuple[int | str, ...]) -> tuple[int | str, ...]:
        return ("body", *[names.get(str(p), p) for p in path[:1]], *path[1:])

    s = hub.settings
    try:
        device = DeviceIn.model_validate(dict(fields))
        check_policy(device, EndpointPolicy.from_lists(s.webpush_http_hosts, s.webpush_allowed_hosts))
    except ValidationError as exc:
        errors = [{**e, "loc": loc(e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None
    except PolicyViolation as exc:  # a Web Push endpoint off the allow-list, or on a private address
        field = tuple(exc.field.split("."))
        raise RequestValidationError([{"loc": loc(field), "msg": exc.message, "type": "policy"}]) from None
    return await hub.devices.register(user.user_id, device, roles=user.roles)


class Page:
    """A static page of the example, served with a strict policy that still lets its own inline script and
    style run (by their hashes), and nothing else."""

    def __init__(self, path: Path) -> None:
        self.html = path.read_text()
        self.csp = page_csp(self.html)

    def response(self) -> HTMLResponse:
        return HTMLResponse(
            self.html, headers={"Content-Security-Policy": self.csp, "Cache-Control": "no-cache"}
        )


def page_csp(html: str) -> str:
    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}[^>]*>(.*?)</{tag}>", html, re.DOTALL)
        digests = (base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() for b in blocks)
        return " ".join(f"'sha256-{d}'" for d in digests)

    return (
        f"default-src 'self'; img-src 'self' data:; script-src 'self' {hashes('script')}; "
        f"style-src 'self' {hashes('style')}; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )
