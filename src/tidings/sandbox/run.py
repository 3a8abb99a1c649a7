"""`tidings sandbox`: all three sandboxes at once, with keys kept in a directory so restarts keep working.

The APNs .p8 key, the FCM service-account JSON and a VAPID key are created on first run under `directory`
(default `.tidings/sandbox`); the printed variables (also written to `<directory>/sandbox.env`) point tidings
at the sandboxes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..push.vapid import VapidKey
from .apns import ApnsSandbox
from .fcm import FcmSandbox
from .webpush import WebPushSandbox

KEY_ID, TEAM_ID, TOPIC, PROJECT = "SANDBOXKEY", "SANDBOXTEAM", "com.example.app", "tidings-sandbox"


@dataclass
class Sandboxes:
    apns: ApnsSandbox
    fcm: FcmSandbox
    webpush: WebPushSandbox
    env: dict[str, str] = field(default_factory=dict)

    async def stop(self) -> None:
        for sandbox in (self.apns, self.fcm, self.webpush):
            await sandbox.stop()


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_or_create(path: Path, make: Callable[[], bytes]) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make())
        path.chmod(0o600)
    return path.read_bytes()


async def start_all(
    directory: Path,
    *,
    host: str = "127.0.0.1",
    apns_port: int = 0,
    control_port: int = 0,
    fcm_port: int = 0,
    fcm_control_port: int = 0,
    webpush_port: int = 0,
    webpush_control_port: int = 0,
) -> Sandboxes:
    apns_path = directory / "apns_key.p8"
    apns_key = serialization.load_pem_private_key(
        _load_or_create(apns_path, lambda: _pem(ec.generate_private_key(ec.SECP256R1()))), None
    )
    fcm_path = directory / "fcm_service_account.json"
    fcm_pem = _load_or_create(directory / "fcm_key.pem", lambda: _pem(rsa.generate_private_key(65537, 2048)))
    fcm_key = serialization.load_pem_private_key(fcm_pem, None)
    vapid_path = directory / "vapid_private.pem"
    _load_or_create(vapid_path, lambda: VapidKey.generate().to_pem())
    assert isinstance(apns_key, ec.EllipticCurvePrivateKey) and isinstance(fcm_key, rsa.RSAPrivateKey)

    apns = ApnsSandbox(
        key_id=KEY_ID,
        team_id=TEAM_ID,
        public_key=apns_key.public_key(),
        host=host,
        port=apns_port,
        control_port=control_port,
    )
    fcm = FcmSandbox(project_id=PROJECT, key=fcm_key, host=host, port=fcm_port, http1_port=fcm_control_port)
    webpush = WebPushSandbox(host=host, port=webpush_port, http1_port=webpush_control_port)
    for sandbox in (apns, fcm, webpush):
        await sandbox.start()
    fcm_path.write_text(json.dumps(fcm.service_account_info(), indent=2))
    fcm_path.chmod(0o600)
    env = {
        "TIDINGS_APNS_URL": apns.url,
        "TIDINGS_APNS_KEY_PATH": str(apns_path.resolve()),
        "TIDINGS_APNS_KEY_ID": KEY_ID,
        "TIDINGS_APNS_TEAM_ID": TEAM_ID,
        "TIDINGS_APNS_TOPIC": TOPIC,
        "TIDINGS_FCM_URL": fcm.url,
        "TIDINGS_FCM_TOKEN_URL": fcm.token_url,
        "TIDINGS_FCM_CREDENTIALS_PATH": str(fcm_path.resolve()),
        "TIDINGS_FCM_PROJECT_ID": PROJECT,
        "TIDINGS_VAPID_PRIVATE_KEY_PATH": str(vapid_path.resolve()),
        "TIDINGS_VAPID_SUBJECT": "mailto:dev@localhost",
        "TIDINGS_WEBPUSH_HTTP_HOSTS": host,
    }
    (directory / "sandbox.env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return Sandboxes(apns, fcm, webpush, env)


def describe(sandboxes: Sandboxes) -> str:
    s = sandboxes
    lines = [
        "           service (HTTP/2, prior knowledge)   control (HTTP/1.1: /_sandbox/...)",
        f"APNs       {s.apns.url:<36}{s.apns.control_url}",
        f"FCM        {s.fcm.url:<36}{s.fcm.control_url}   (token endpoint {s.fcm.token_url})",
        f"Web Push   {s.webpush.url:<36}{s.webpush.control_url}   (endpoints also answer HTTP/1.1 there)",
        "",
        f"New Web Push subscription: curl -X POST {s.webpush.control_url}/_sandbox/subscriptions",
        "Records: GET <control>/_sandbox/records[?token=]   Failures: POST <control>/_sandbox/rules",
        '  e.g. curl -X POST <control>/_sandbox/rules -d \'{"token": "<device token>", "status": 410, '
        '"reason": "Unregistered"}\'',
        "",
        "Point tidings at them (also written to sandbox.env):",
        *(f"export {key}={value}" for key, value in s.env.items()),
    ]
    return "\n".join(lines)


async def serve(
    directory: Path, echo: Callable[[str], None] = print, *, host: str = "127.0.0.1", **ports: int
) -> None:
    """Run until SIGINT/SIGTERM."""
    sandboxes = await start_all(directory, host=host, **ports)
    echo(describe(sandboxes))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await sandboxes.stop()
