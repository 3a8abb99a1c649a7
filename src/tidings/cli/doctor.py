"""`tidings doctor`: check configuration and reachability, and print a checklist.

Each check is a small function returning `Check`s, so tests (and `tidings doctor --json`) read the same values
the checklist prints. Exit status 1 when anything failed; "off" (a provider not configured) is not a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import typer

from tidings.config import Settings, load_settings
from tidings.errors import ConfigError

app = typer.Typer(help="Check configuration and reachability.")

Status = Literal["ok", "warn", "fail", "off"]
MARK = {"ok": "✔", "warn": "!", "fail": "✘", "off": "-"}
_APPLE_ID = re.compile(r"[A-Z0-9]{10}")


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str


def _read(path: Path | None, text: str, what: str) -> tuple[bytes | None, Check | None]:
    """The bytes of a secret given as a file path or inline text, or a failing Check saying why not."""
    if text:
        return text.encode(), None
    if path is None:
        return None, None
    try:
        return path.read_bytes(), None
    except OSError as exc:
        return None, Check(what, "fail", f"{path}: {exc.strerror or exc}")


def check_apns(s: Settings) -> list[Check]:
    if not (s.apns_key_path or s.apns_key or s.apns_key_id or s.apns_team_id):
        return [Check("APNs", "off", "not configured (TIDINGS_APNS_KEY_PATH, _KEY_ID, _TEAM_ID, _TOPIC)")]
    from tidings.push.apns import load_signing_key

    out: list[Check] = []
    pem, failed = _read(s.apns_key_path, s.apns_key, "APNs key")
    if failed:
        out.append(failed)
    elif pem is None:
        out.append(Check("APNs key", "fail", "set TIDINGS_APNS_KEY_PATH (the .p8 file) or TIDINGS_APNS_KEY"))
    else:
        try:
            load_signing_key(pem)
            out.append(Check("APNs key", "ok", f"{s.apns_key_path or 'TIDINGS_APNS_KEY'}: EC private key"))
        except (ValueError, TypeError) as exc:
            out.append(Check("APNs key", "fail", f"not a .p8 EC private key: {exc}"))
    for label, value, var in (("key id", s.apns_key_id, "KEY_ID"), ("team id", s.apns_team_id, "TEAM_ID")):
        if not value:
            out.append(Check(f"APNs {label}", "fail", f"TIDINGS_APNS_{var} is empty"))
        elif not _APPLE_ID.fullmatch(value):
            out.append(Check(f"APNs {label}", "warn", f"{value!r}: Apple's are 10 capital letters/digits"))
        else:
            out.append(Check(f"APNs {label}", "ok", value))
    if s.apns_topic:
        out.append(Check("APNs topic", "ok", s.apns_topic))
    else:
        out.append(Check("APNs topic", "fail", "TIDINGS_APNS_TOPIC (the app's bundle id) is empty"))
    if s.apns_url:
        out.append(Check("APNs host", "warn", f"overridden: {s.apns_url} (sandbox?)"))
    return out


def check_fcm(s: Settings) -> list[Check]:
    raw, failed = _read(s.fcm_credentials_path, s.fcm_credentials, "FCM credentials")
    if failed:
        return [failed]
    if raw is None:
        return [
            Check("FCM", "off", "not configured (TIDINGS_FCM_CREDENTIALS_PATH or TIDINGS_FCM_CREDENTIALS)")
        ]
    try:
        info = json.loads(raw)
        if not isinstance(info, dict) or info.get("type") != "service_account":
            raise ValueError('not a service-account key ("type": "service_account")')
        from google.oauth2 import service_account

        creds = service_account.Credentials.from_service_account_info(info)  # type: ignore[no-untyped-call]
    except (ValueError, KeyError) as exc:
        return [Check("FCM credentials", "fail", f"unusable: {exc}")]
    out = [Check("FCM credentials", "ok", f"service account {creds.service_account_email}")]
    project = s.fcm_project_id or info.get("project_id", "")
    out.append(
        Check("FCM project", "ok" if project else "fail", project or "no project id (TIDINGS_FCM_PROJECT_ID)")
    )
    if s.fcm_url:
        out.append(Check("FCM host", "warn", f"overridden: {s.fcm_url} (sandbox?)"))
    return out


def check_vapid(s: Settings) -> list[Check]:
    if s.vapid_private_key_path is None:
        return [
            Check(
                "Web Push", "off", "not configured (TIDINGS_VAPID_PRIVATE_KEY_PATH; `tidings vapid generate`)"
            )
        ]
    from tidings.push.vapid import VapidKey

    try:
        key = VapidKey.load(s.vapid_private_key_path)
        out = [Check("VAPID key", "ok", f"P-256; public key {key.public_key}")]
    except OSError as exc:
        out = [Check("VAPID key", "fail", f"{s.vapid_private_key_path}: {exc.strerror or exc}")]
    except (ValueError, TypeError) as exc:
        out = [Check("VAPID key", "fail", f"{s.vapid_private_key_path}: {exc}")]
    if s.vapid_subject.startswith(("mailto:", "https:")):
        out.append(Check("VAPID subject", "ok", s.vapid_subject))
    else:
        out.append(Check("VAPID subject", "fail", "TIDINGS_VAPID_SUBJECT must be a mailto: or https: URL"))
    return out


def _missing_sqlite_file(url: str) -> str | None:
    from sqlalchemy.engine import make_url

    from tidings import db

    path = make_url(url).database if db.is_sqlite(url) else None
    return path if path and path != ":memory:" and not os.path.exists(path) else None


async def check_database(s: Settings) -> Check:
    from tidings import db

    url = s.effective_database_url
    missing = _missing_sqlite_file(url)
    if missing:  # do not create it just by looking
        return Check("database", "warn", f"{missing} does not exist yet (created at first start)")
    engine = db.create_engine(url)
    try:
        async with asyncio.timeout(5):
            revision = await db.current(url, engine=engine)
    except Exception as exc:  # any failure is the answer: unreachable
        return Check("database", "fail", f"unreachable: {type(exc).__name__}: {exc}")
    finally:
        await engine.dispose()
    head = db.head_revision()
    where = engine.url.render_as_string(hide_password=True)
    if revision != head:
        return Check("database", "warn", f"{where}: schema at {revision or 'nothing'}, newest is {head}")
    return Check("database", "ok", f"{where} (schema {revision})")


async def check_broker(s: Settings) -> Check:
    if not s.uses_redis:
        return Check("broker", "ok", "memory:// (embedded: bus and push queue inside `tidings serve`)")
    from tidings.delivery.queue import create_queue

    queue = create_queue(s)
    try:
        async with asyncio.timeout(5):
            stats = await queue.stats()
    except Exception as exc:
        return Check("broker", "fail", f"{s.bus_url}: unreachable: {type(exc).__name__}: {exc}")
    finally:
        await queue.close()
    detail = (
        f"{s.bus_url}: push queue ready={stats.ready} in_flight={stats.in_flight} delayed={stats.delayed}"
    )
    return Check("broker", "warn" if stats.dead else "ok", detail + f" dead={stats.dead}")


async def check_providers(s: Settings) -> list[Check]:
    from tidings.push import build_providers

    try:
        providers = build_providers(s, clock=time.time)
    except Exception as exc:
        return [Check("providers", "fail", f"cannot be built: {type(exc).__name__}: {exc}")]
    out = []
    for name, provider in providers.items():
        out.append(
            Check(
                f"provider {name}", "ok" if provider.configured else "off", provider.missing or "configured"
            )
        )
        await provider.aclose()
    return out


async def run_checks(s: Settings) -> list[Check]:
    checks = check_apns(s) + check_fcm(s) + check_vapid(s)
    checks += [await check_database(s), await check_broker(s)]
    return checks + await check_providers(s)


@app.callback(invoke_without_command=True)
def doctor(as_json: bool = typer.Option(False, "--json", help="The checks as a JSON list.")) -> None:
    """Key files, VAPID keys, topic, database, broker and each provider: a checklist."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        typer.echo(f"✘ configuration  {exc}")
        raise typer.Exit(1) from exc
    checks = asyncio.run(run_checks(settings))
    if as_json:
        typer.echo(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            typer.echo(f"{MARK[c.status]} {c.name.ljust(width)}  {c.detail}")
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)
