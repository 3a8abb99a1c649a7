"""From settings to sandboxes: `tidings sandbox`'s env drives build_providers; the VAPID CLI and endpoint."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import httpx
from fastapi import FastAPI
from push_helpers import note
from typer.testing import CliRunner

from tidings import Hub, Settings
from tidings.api.webpush import router as webpush_router
from tidings.cli.vapid import app as vapid_cli
from tidings.push import Outcome, Target, build_providers
from tidings.push.vapid import VapidKey
from tidings.sandbox.run import describe, start_all


async def test_sandbox_env_configures_every_provider_and_each_delivers(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    sandboxes = await start_all(tmp_path / "sandbox")
    providers = {}
    try:
        settings = make_settings(**{k.removeprefix("TIDINGS_").lower(): v for k, v in sandboxes.env.items()})
        providers = build_providers(settings)
        assert all(p.configured for p in providers.values()), {n: p.missing for n, p in providers.items()}
        subscription = sandboxes.webpush.subscribe()
        targets = {
            "apns": Target("d1", "apns", "ab" * 32, environment="sandbox"),
            "fcm": Target("d2", "fcm", "registration-token-abcdefghijklmnop"),
            "webpush": Target("d3", "webpush", subscription["endpoint"], **subscription["keys"]),
        }
        for name, provider in providers.items():
            result = await provider.send(targets[name], provider.prepare(note()))
            assert result.outcome is Outcome.delivered, (name, result)
        assert "export TIDINGS_APNS_URL=" in describe(sandboxes)
        assert (tmp_path / "sandbox" / "sandbox.env").read_text().count("TIDINGS_") == len(sandboxes.env)
    finally:
        for provider in providers.values():
            await provider.aclose()
        await sandboxes.stop()


async def test_unconfigured_settings_build_skipping_providers(make_settings: Callable[..., Settings]) -> None:
    providers = build_providers(make_settings())
    for provider in providers.values():
        assert not provider.configured and provider.missing
        result = await provider.send(Target("d", provider.name, "t"), provider.prepare(note()))
        assert result.outcome is Outcome.skipped
        await provider.aclose()


def test_vapid_generate_writes_a_private_key_and_prints_the_public_key(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "vapid.pem"
    result = CliRunner().invoke(vapid_cli, ["generate", "--path", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == VapidKey.load(path).public_key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = CliRunner().invoke(vapid_cli, ["generate", "--path", str(path)])
    assert again.exit_code == 1  # never silently replace a key subscriptions depend on


async def test_vapid_public_key_endpoint(tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    key = VapidKey.generate()
    key.write(tmp_path / "vapid.pem")

    async def get(settings: Settings) -> httpx.Response:
        app = FastAPI()
        app.include_router(webpush_router)
        app.state.tidings_hub = Hub(settings)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
            return await client.get("/v1/webpush/vapid-public-key")

    ok = await get(make_settings(vapid_private_key_path=tmp_path / "vapid.pem"))
    assert ok.status_code == 200 and ok.json() == {"public_key": key.public_key}
    assert len(VapidKey.load(tmp_path / "vapid.pem").public_key) == 87  # 65 bytes, base64url unpadded
    missing = await get(make_settings())
    assert missing.status_code == 404 and missing.json()["error"] == "not_configured"
