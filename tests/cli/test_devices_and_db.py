"""`tidings db` and `tidings devices` against SQLite and PostgreSQL, through typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from registry.helpers import b64url, p256dh
from tidings import db
from tidings.cli import db as db_cli
from tidings.cli import devices as devices_cli

runner = CliRunner()


def devices(env: dict[str, str], *args: str) -> Result:
    return runner.invoke(devices_cli.app, list(args), env=env)


def add(env: dict[str, str], user: str, provider: str, platform: str, token: str, *extra: str) -> Result:
    args = ["add", "--user", user, "--provider", provider, "--platform", platform, "--token", token, *extra]
    return devices(env, *args)


WEB_KEYS = ("--p256dh", p256dh(), "--auth", b64url(b"a" * 16))
ENDPOINT = "https://fcm.googleapis.com/fcm/send/x"


def test_db_upgrade_and_current(database_url: str) -> None:
    before = runner.invoke(db_cli.app, ["current", "--url", database_url, "--check"])
    assert before.exit_code == 1 and "empty database" in before.output
    up = runner.invoke(db_cli.app, ["upgrade", "--url", database_url])
    assert up.exit_code == 0, up.output
    after = runner.invoke(db_cli.app, ["current", "--url", database_url, "--check"])
    assert after.exit_code == 0 and f"at {db.head_revision()}" in after.output


def test_db_cli_never_prints_a_password() -> None:
    assert (
        db_cli.shown("postgresql+asyncpg://app:s3cret@db:5432/tidings")
        == "postgresql+asyncpg://app:***@db:5432/tidings"
    )


def test_db_upgrade_uses_settings_when_no_url(tmp_path: Path) -> None:
    env = {"TIDINGS_DATA_DIR": str(tmp_path / "data"), "TIDINGS_DATABASE_URL": ""}
    result = runner.invoke(db_cli.app, ["upgrade"], env=env)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "tidings.db").exists()


@pytest.fixture
def env(migrated_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "TIDINGS_DATABASE_URL": migrated_url,
        "TIDINGS_DATA_DIR": str(tmp_path),
        "TIDINGS_DEVICE_TTL_DAYS": "1",
    }


def test_devices_add_list_remove(env: dict[str, str]) -> None:
    token = "ab" * 32
    first = add(env, "ana", "apns", "ios", token, "--name", "desk")
    assert first.exit_code == 0 and first.output.startswith("registered "), first.output
    device_id = first.output.split()[1]
    again = add(env, "ana", "apns", "ios", token.upper())
    assert again.output.startswith(f"refreshed {device_id}")
    web = add(env, "bob", "webpush", "web", ENDPOINT, *WEB_KEYS, "--topic", "news")
    assert web.exit_code == 0, web.output
    listed = devices(env, "list", "--json")
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert {r["user_id"] for r in rows} == {"ana", "bob"}
    only_ana = devices(env, "list", "--user", "ana")
    assert device_id in only_ana.output and "bob" not in only_ana.output
    assert devices(env, "remove", device_id).exit_code == 0
    assert devices(env, "remove", device_id).exit_code == 1
    by_token = devices(env, "remove", "--token", ENDPOINT, "--user", "bob")
    assert by_token.exit_code == 0, by_token.output
    assert devices(env, "remove").exit_code == 2


def test_devices_add_reports_the_bad_field(env: dict[str, str]) -> None:
    bad = add(env, "ana", "apns", "android", "ab" * 32)
    assert bad.exit_code == 2 and "--platform" in bad.output
    ssrf = add(env, "ana", "webpush", "web", "https://10.0.0.1/x", *WEB_KEYS)
    assert ssrf.exit_code == 2 and "private" in ssrf.output


def test_devices_prune_runs_once(env: dict[str, str]) -> None:
    result = devices(env, "prune")
    assert result.exit_code == 0 and "pruned 0 devices" in result.output, result.output
