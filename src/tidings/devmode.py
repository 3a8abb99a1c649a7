"""Development conveniences: a generated JWT secret and publish key, kept in the data directory.

Only in development mode, and loudly logged: a production server refuses to start without real secrets (see
config.Settings; giving any secret selects production), so nothing generated here can leak into one. Only the
generated secrets are ever printed (the CLI's walkthrough); a configured one never is.
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


def generated_fields(settings: Settings) -> frozenset[str]:
    """The secrets development mode fills in for `settings` (as configured): none in production."""
    if not settings.is_development:
        return frozenset()
    missing = set()
    if not (settings.jwt_secret or settings.jwt_public_key_path or settings.jwks_url):
        missing.add("jwt_secret")
    if not settings.publish_key:
        missing.add("publish_key")
    return frozenset(missing)


def ensure_dev_secrets(settings: Settings) -> Settings:
    """Settings with a JWT secret and publish key filled in from the data directory when none were given."""
    missing = generated_fields(settings)
    if not missing:
        return settings
    stored = load_or_create(settings.data_dir)
    update = {name: stored[name] for name in sorted(missing)}
    log.warning(
        "DEVELOPMENT MODE: using generated %s from %s — give real secrets (production mode follows) before deploying",
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
