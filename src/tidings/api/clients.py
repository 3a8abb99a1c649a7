"""The hub's static files: the browser client (`/v1/client.js`), its service worker (`/v1/sw.js`), the dashboard.

They ship inside the package (`tidings/static/`, package-data), read once at import, and are served from memory
with a strong ETag. `clients/js/` in the repository links to the same files, so there is one copy.

- `/v1/client.js`: an ES module other origins may `import` (module scripts load in CORS mode), hence
  `Access-Control-Allow-Origin: *` without credentials. Cached 5 minutes and revalidated by ETag; with
  `?v=<etag>` (the ETag it is served with) it is immutable for a year.
- `/v1/sw.js`: `no-cache` (browsers check it for updates), `Service-Worker-Allowed: /`, so an app on the hub's
  origin may register it for a wider scope than `/v1/` (it has no fetch handler: it intercepts nothing).
- `/dashboard` redirects to `dashboard/` (relative, so a hub mounted under a prefix works); the files are served
  with a strict Content-Security-Policy (no inline script or style, nothing from elsewhere, no framing).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..errors import ApiError
from .deps import HubDep
from .errors import make_router

router = make_router(tags=["clients"], include_in_schema=False)

DASHBOARD_CSP = (
    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".ts": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_COMMON = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str

    def answer(self, request: Request, headers: dict[str, str]) -> Response:
        """The file, or 304 when the client holds this version."""
        headers = {**_COMMON, **headers, "ETag": f'"{self.etag}"'}
        given = request.headers.get("if-none-match", "")
        if self.etag in {tag.strip().removeprefix("W/").strip('"') for tag in given.split(",")}:
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type=self.content_type, headers=headers)


def _load(folder: str) -> dict[str, StaticFile]:
    files = {}
    for entry in resources.files("tidings").joinpath("static", folder).iterdir():
        if entry.is_file() and not entry.name.startswith("."):
            body = entry.read_bytes()
            suffix = entry.name[entry.name.rfind(".") :]
            content_type = _TYPES.get(suffix, "application/octet-stream")
            files[entry.name] = StaticFile(body, content_type, hashlib.sha256(body).hexdigest()[:20])
    return files


CLIENT = _load("client")
DASHBOARD = _load("dashboard")


@router.get("/v1/client.js")
async def client_js(request: Request) -> Response:
    script = CLIENT["tidings.js"]
    versioned = request.query_params.get("v") == script.etag
    headers = {
        "Cache-Control": "public, max-age=31536000, immutable" if versioned else "public, max-age=300",
        "Access-Control-Allow-Origin": "*",
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    return script.answer(request, headers)


@router.get("/v1/sw.js")
async def service_worker(request: Request) -> Response:
    headers = {
        "Cache-Control": "no-cache",
        "Service-Worker-Allowed": "/",
        "Content-Security-Policy": "default-src 'self'",
    }
    return CLIENT["sw.js"].answer(request, headers)


def _dashboard_on(hub: HubDep) -> None:
    if not hub.settings.dashboard:
        raise ApiError(404, "not_found", "the dashboard is off (TIDINGS_DASHBOARD=false)")


@router.get("/dashboard")
async def dashboard_root(hub: HubDep) -> Response:
    _dashboard_on(hub)
    # relative: /hub/dashboard -> /hub/dashboard/, wherever the hub is mounted (the page's URLs are relative)
    return RedirectResponse("dashboard/", status_code=307)


@router.get("/dashboard/")
@router.get("/dashboard/{name}")
async def dashboard_file(request: Request, hub: HubDep, name: str = "index.html") -> Response:
    _dashboard_on(hub)
    found = DASHBOARD.get(name)
    if found is None:
        raise ApiError(404, "not_found", "no such dashboard file")
    headers = {
        "Cache-Control": "no-cache",
        "Content-Security-Policy": DASHBOARD_CSP,
        "X-Frame-Options": "DENY",
    }
    return found.answer(request, headers)
