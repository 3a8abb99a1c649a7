"""A real delivery path for integration tests: SQLite DeviceStore + DeliveryLog, the APNs sandbox on 127.0.0.1
(HTTP/2 over a real socket), the real ApnsProvider, and a Worker on a chosen queue."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.ext.asyncio import AsyncEngine

from tidings import db
from tidings.config import Settings
from tidings.delivery.log import DeliveryLog
from tidings.delivery.queue import PushJob, Queue
from tidings.delivery.worker import Worker
from tidings.push.apns import ApnsProvider
from tidings.push.base import Provider
from tidings.registry.store import Device, DeviceStore
from tidings.registry.validation import DeviceIn
from tidings.sandbox.apns import ApnsSandbox
from tidings.sandbox.control import Rule

KEY_ID = "KEY1234567"
TEAM_ID = "TEAM123456"
TOPIC = "com.example.orders"


def new_key_pem() -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, key


def apns_token() -> str:
    return os.urandom(32).hex()


@dataclass
class ApnsRig:
    sandbox: ApnsSandbox
    key_pem: bytes
    engine: AsyncEngine
    database_url: str
    store: DeviceStore
    log: DeliveryLog
    clock: Callable[[], float]

    def provider(self, *, key_pem: bytes | None = None, timeout: float = 5.0) -> ApnsProvider:
        return ApnsProvider(
            key_pem=key_pem or self.key_pem,
            key_id=KEY_ID,
            team_id=TEAM_ID,
            topic=TOPIC,
            base_url=self.sandbox.url,
            clock=time.time,
            timeout=timeout,
        )

    async def register(self, user: str, token: str | None = None) -> Device:
        device, _ = await self.store.register(
            user,
            DeviceIn(provider="apns", platform="ios", token=token or apns_token(), environment="sandbox"),
        )
        return device

    def rule(self, token: str, status: int, reason: str = "", **kw: Any) -> None:
        self.sandbox.state.add_rule(Rule(token=token, status=status, reason=reason, **kw))

    def received(self, token: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.sandbox.state.records if token is None or r.get("token") == token]

    def worker(self, queue: Queue, providers: dict[str, Provider], **kw: Any) -> Worker:
        options: dict[str, Any] = {"concurrency": 8, "max_attempts": 3, "burst": True, "send_timeout": 10.0}
        options.update(kw)
        return Worker(
            queue=queue, devices=self.store, providers=providers, log=self.log, clock=self.clock, **options
        )


@asynccontextmanager
async def apns_rig(tmp_path: Path, clock: Callable[[], float]) -> AsyncIterator[ApnsRig]:
    pem, key = new_key_pem()
    url = f"sqlite+aiosqlite:///{tmp_path / 'tidings.db'}"
    await db.upgrade(url)
    engine = db.create_engine(url)
    sandbox = ApnsSandbox(
        key_id=KEY_ID, team_id=TEAM_ID, public_key=key.public_key(), topics=frozenset({TOPIC})
    )
    await sandbox.start()
    try:
        yield ApnsRig(
            sandbox=sandbox,
            key_pem=pem,
            engine=engine,
            database_url=url,
            store=DeviceStore(engine, clock=clock),
            log=DeliveryLog(engine, clock=clock),
            clock=clock,
        )
    finally:
        await sandbox.stop()
        await engine.dispose()


def order_job(users: list[str], event_id: str = "ev-1", push: dict[str, Any] | None = None) -> PushJob:
    return PushJob(
        event_id=event_id,
        event_type="order.created",
        audience={"users": users, "roles": [], "topics": [], "broadcast": False},
        spec=push or {"mode": "silent"},
        data={"order_id": "o-42"},
    )


@dataclass
class AllRig:
    """All three sandboxes, and providers built from Settings exactly as `tidings worker` builds them."""

    apns: ApnsRig
    fcm: Any  # FcmSandbox
    webpush: Any  # WebPushSandbox
    settings: Any  # Settings

    async def register_fcm(self, user: str) -> Device:
        token = "fcm_" + os.urandom(24).hex()
        device, _ = await self.apns.store.register(
            user, DeviceIn(provider="fcm", platform="android", token=token)
        )
        return device

    async def register_webpush(self, user: str) -> Device:
        sub = self.webpush.subscribe()
        device, _ = await self.apns.store.register(
            user, DeviceIn(provider="webpush", platform="web", subscription=sub)
        )
        return device

    def fcm_rule(self, token: str, code: str, **kw: Any) -> None:
        self.fcm.state.add_rule(Rule(token=token, status=400, reason=code, **kw))

    def webpush_rule(self, endpoint: str, status: int, **kw: Any) -> None:
        self.webpush.state.add_rule(Rule(token=endpoint, status=status, **kw))


@asynccontextmanager
async def all_rig(tmp_path: Path, clock: Callable[[], float], **settings: Any) -> AsyncIterator[AllRig]:
    import json

    from tidings.config import Settings
    from tidings.push.vapid import VapidKey
    from tidings.sandbox.fcm import FcmSandbox
    from tidings.sandbox.webpush import WebPushSandbox

    async with (
        apns_rig(tmp_path, clock) as apns,
        FcmSandbox(project_id="demo-project") as fcm,
        WebPushSandbox() as webpush,
    ):
        key_path, vapid_path = tmp_path / "AuthKey.p8", tmp_path / "vapid.pem"
        key_path.write_bytes(apns.key_pem)
        VapidKey.generate().write(vapid_path)
        values: dict[str, Any] = {
            "data_dir": tmp_path,
            "database_url": apns.database_url,
            "apns_key_path": key_path,
            "apns_key_id": KEY_ID,
            "apns_team_id": TEAM_ID,
            "apns_topic": TOPIC,
            "apns_url": apns.sandbox.url,
            "fcm_credentials": json.dumps(fcm.service_account_info()),
            "fcm_url": fcm.url,
            "fcm_token_url": fcm.token_url,
            "vapid_private_key_path": vapid_path,
            "vapid_subject": "mailto:ops@example.com",
            "webpush_http_hosts": ["127.0.0.1"],
        }
        values.update(settings)
        yield AllRig(apns, fcm, webpush, Settings(_env_file=None, **values))  # type: ignore[call-arg]


def apns_settings(rig: ApnsRig, tmp_path: Path, **extra: object) -> Settings:
    key = tmp_path / "AuthKey.p8"
    key.write_bytes(rig.key_pem)
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path,
        database_url=rig.database_url,
        apns_key_path=key,
        apns_key_id=KEY_ID,
        apns_team_id=TEAM_ID,
        apns_topic=TOPIC,
        apns_url=rig.sandbox.url,
        **extra,
    )
