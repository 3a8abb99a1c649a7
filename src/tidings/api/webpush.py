"""`GET /v1/webpush/vapid-public-key`: the applicationServerKey browsers give `pushManager.subscribe`."""

from __future__ import annotations

import functools
from pathlib import Path

from ..errors import ApiError
from ..push.vapid import VapidKey
from .deps import HubDep
from .errors import make_router
from .openapi import answers

router = make_router(tags=["webpush"])


@functools.lru_cache(maxsize=4)
def _public_key(path: Path, mtime_ns: int) -> str:
    return VapidKey.load(path).public_key  # keyed by mtime too: a regenerated key is served at once


@router.get(
    "/v1/webpush/vapid-public-key",
    summary="The VAPID public key (base64url, uncompressed P-256)",
    responses=answers(404, 503),
)
async def vapid_public_key(hub: HubDep) -> dict[str, str]:
    path = hub.settings.vapid_private_key_path
    if path is None:
        raise ApiError(404, "not_configured", "Web Push is not configured (TIDINGS_VAPID_PRIVATE_KEY_PATH)")
    try:
        return {"public_key": _public_key(path, path.stat().st_mtime_ns)}
    except (OSError, ValueError) as exc:
        raise ApiError(503, "vapid_key_unusable", f"the VAPID key cannot be read: {exc}") from exc
