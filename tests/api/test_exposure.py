"""What a deployment exposes by default: production mode as soon as secrets are given, no API map in
production unless asked for, /metrics behind a token when one is set, no configured secret ever printed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from support import InProcessServer, app_of, free_port
from tidings import Hub, Settings
from tidings.config import Environment, load_settings


@pytest.mark.parametrize(
    "variable",
    ["TIDINGS_JWT_SECRET", "TIDINGS_JWKS_URL", "TIDINGS_PUBLISH_KEY", "TIDINGS_JWT_PUBLIC_KEY_PATH"],
)
def test_production_is_chosen_whenever_a_real_secret_is_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str
) -> None:
    """Regression: TIDINGS_ENV defaulted to development even with real secrets set."""
    for name in [k for k in os.environ if k.startswith("TIDINGS_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env file
    assert load_settings().env is Environment.development
    monkeypatch.setenv("TIDINGS_JWT_SECRET", "a-real-secret-0123456789abcdef0123456789")
    monkeypatch.setenv(variable, str(tmp_path / "key.pem") if variable.endswith("PATH") else "https://x/y")
    assert load_settings().env is Environment.production
    monkeypatch.setenv("TIDINGS_ENV", "development")  # still possible, when said
    assert load_settings().env is Environment.development


def test_a_publish_key_alone_selects_production_and_then_asks_for_jwt_keys(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in [k for k in os.environ if k.startswith("TIDINGS_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TIDINGS_PUBLISH_KEY", "a-real-key")
    with pytest.raises(Exception, match="production needs TIDINGS_JWT_SECRET"):
        load_settings()


@pytest.mark.parametrize(
    ("overrides", "served"),
    [({}, False), ({"docs_enabled": True}, True), ({"env": "development"}, True)],
    ids=["production", "production-enabled", "development"],
)
async def test_the_api_description_is_served_only_when_enabled_or_in_development(
    make_settings: Callable[..., Settings], overrides: dict[str, object], served: bool
) -> None:
    """Regression: /docs and /openapi.json were served to anyone in production."""
    hub = Hub(make_settings(**overrides))
    async with InProcessServer(app_of(hub)) as server, httpx.AsyncClient(base_url=server.url) as http:
        for path in ("/docs", "/openapi.json"):
            response = await http.get(path)
            if served:
                assert response.status_code == 200, path
            else:
                assert (response.status_code, response.json()["error"]) == (404, "not_found"), path


async def test_metrics_need_the_bearer_token_when_one_is_set(make_settings: Callable[..., Settings]) -> None:
    """Regression: /metrics (connection counts, event types, push outcomes) needed no credentials."""
    hub = Hub(make_settings(metrics_token="scrape-me-0123456789"))
    async with InProcessServer(app_of(hub)) as server, httpx.AsyncClient(base_url=server.url) as http:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Basic scrape-me-0123456789"},
        ):
            response = await http.get("/metrics", headers=headers)
            assert (response.status_code, response.json()["error"]) == (401, "unauthorized"), headers
            assert response.headers["www-authenticate"] == "Bearer"
        response = await http.get("/metrics", headers={"Authorization": "Bearer scrape-me-0123456789"})
        assert response.status_code == 200 and "sse_connections_active" in response.text


async def test_metrics_are_open_when_no_token_is_set(make_settings: Callable[..., Settings]) -> None:
    hub = Hub(make_settings())
    async with InProcessServer(app_of(hub)) as server, httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/metrics")).status_code == 200


def test_development_mode_never_prints_a_configured_publish_key_or_secret(tmp_path: Path) -> None:
    """Regression: the walkthrough printed the configured publish key, and a 24 h admin JWT signed with the
    configured secret, to the terminal (and to whatever log captured it)."""
    key, secret = "configured-publish-key-5f2b", "configured-jwt-secret-0123456789abcdef"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update(TIDINGS_ENV="development", TIDINGS_PUBLISH_KEY=key, TIDINGS_JWT_SECRET=secret)
    text = walkthrough(env, tmp_path)
    assert "/v1/publish" in text and key not in text and secret not in text
    assert "eyJ" not in text  # no token signed with the configured secret
    assert "$TIDINGS_PUBLISH_KEY" in text and "$(tidings token --user alice)" in text


def test_development_mode_prints_the_generated_publish_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    text = walkthrough(env, tmp_path)
    generated = json.loads((tmp_path / ".tidings" / "dev-secrets.json").read_text())
    assert generated["publish_key"] in text and "eyJ" in text


def walkthrough(env: dict[str, str], cwd: Path) -> str:
    """What `tidings serve` prints before it serves: stderr up to the publish example."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tidings", "serve", "--port", str(free_port())],
        cwd=cwd,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        while not any("/v1/publish" in line for line in lines):
            line = proc.stderr.readline()
            assert line, "".join(lines)  # the process ended without printing the walkthrough
            lines.append(line)
        return "".join(lines)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
