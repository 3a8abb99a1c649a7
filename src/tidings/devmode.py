"""Development conveniences: a generated JWT secret and publish key, kept in the data directory.

Only in development mode, and loudly logged: a production server refuses to start without real secrets (see
config.Settings), so nothing generated here can leak into one.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path

from .config import Settings

log = logging.getLogger("tidings")

SECRETS_FILE = "dev-secrets.json"


def ensure_dev_secrets(settings: Settings) -> Settings:
    """Settings with a JWT secret and publish key filled in from the data directory when none were given."""
    needs_secret = not (settings.jwt_secret or settings.jwt_public_key_path or settings.jwks_url)
    if not settings.is_development or not (needs_secret or not settings.publish_key):
        return settings
    stored = load_or_create(settings.data_dir)
    update: dict[str, str] = {}
    if needs_secret:
        update["jwt_secret"] = stored["jwt_secret"]
    if not settings.publish_key:
        update["publish_key"] = stored["publish_key"]
    log.warning(
        "DEVELOPMENT MODE: using generated %s from %s — set TIDINGS_ENV=production with real secrets before deploying",
        " and ".join(k.upper() for k in update),
        settings.data_dir / SECRETS_FILE,
    )
    return settings.model_copy(update=update)


def load_or_create(data_dir: Path) -> dict[str, str]:
    path = data_dir / SECRETS_FILE
    try:
        stored = json.loads(path.read_text())
        if isinstance(stored, dict) and {"jwt_secret", "publish_key"} <= stored.keys():
            return {k: str(stored[k]) for k in ("jwt_secret", "publish_key")}
    except (OSError, ValueError):
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    stored = {"jwt_secret": secrets.token_urlsafe(32), "publish_key": "tk_" + secrets.token_urlsafe(24)}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # secrets: owner-only
    with os.fdopen(fd, "w") as fh:
        json.dump(stored, fh)
    return stored
