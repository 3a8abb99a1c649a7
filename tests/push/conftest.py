"""Fixtures: real sandboxes on 127.0.0.1 and providers pointed at them, with a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from push_helpers import KEY_ID, TEAM_ID, TOPIC

from support import ManualClock
from tidings.push.apns import ApnsProvider
from tidings.push.fcm import FcmProvider
from tidings.push.transport import PoolSettings, Transport
from tidings.push.vapid import VapidKey
from tidings.push.webpush import WebPushProvider
from tidings.sandbox.apns import ApnsSandbox
from tidings.sandbox.fcm import FcmSandbox
from tidings.sandbox.webpush import WebPushSandbox


@pytest.fixture(scope="session")
def apns_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def apns_pem(apns_key: ec.EllipticCurvePrivateKey) -> bytes:
    return apns_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture
async def apns_sandbox(
    apns_key: ec.EllipticCurvePrivateKey, clock: ManualClock
) -> AsyncIterator[ApnsSandbox]:
    async with ApnsSandbox(
        key_id=KEY_ID,
        team_id=TEAM_ID,
        public_key=apns_key.public_key(),
        topics=frozenset({TOPIC}),
        clock=clock,
    ) as sandbox:
        yield sandbox


@pytest.fixture(params=["own", "injected"])
async def apns(
    request: pytest.FixtureRequest, apns_sandbox: ApnsSandbox, apns_pem: bytes, clock: ManualClock
) -> AsyncIterator[ApnsProvider]:
    """The provider on the transport it builds, and on an injected one (one connection, its own deadlines):
    the same send path, and both must behave the same."""
    transport = None
    if request.param == "injected":
        settings = PoolSettings(max_connections=1, connect_timeout=2.0, stall_after=1.0)
        transport = Transport(timeout=2.0, http1=False, settings=settings, service="APNs")
    provider = ApnsProvider(
        key_pem=apns_pem,
        key_id=KEY_ID,
        team_id=TEAM_ID,
        topic=TOPIC,
        base_url=apns_sandbox.url,
        clock=clock,
        timeout=2.0,
        transport=transport,
    )
    yield provider
    await provider.aclose()


@pytest.fixture
async def fcm_sandbox(clock: ManualClock) -> AsyncIterator[FcmSandbox]:
    async with FcmSandbox(project_id="demo-project", clock=clock) as sandbox:
        yield sandbox


@pytest.fixture(params=["h2c", "http1"])
async def fcm(
    request: pytest.FixtureRequest, fcm_sandbox: FcmSandbox, clock: ManualClock
) -> AsyncIterator[FcmProvider]:
    """The provider against FCM over HTTP/2, and against an HTTP/1.1-only host (it falls back)."""
    provider = FcmProvider(
        service_account_info=fcm_sandbox.service_account_info(),
        base_url=fcm_sandbox.url if request.param == "h2c" else fcm_sandbox.control_url,
        token_url=fcm_sandbox.token_url,
        clock=clock,
        timeout=2.0,
    )
    yield provider
    await provider.aclose()


@pytest.fixture(scope="session")
def vapid_key() -> VapidKey:
    return VapidKey.generate()


@pytest.fixture
async def webpush_sandbox(clock: ManualClock) -> AsyncIterator[WebPushSandbox]:
    async with WebPushSandbox(clock=clock) as sandbox:
        yield sandbox


@pytest.fixture
async def webpush(vapid_key: VapidKey, clock: ManualClock) -> AsyncIterator[WebPushProvider]:
    provider = WebPushProvider(
        vapid_key=vapid_key,
        subject="mailto:ops@example.com",
        clock=clock,
        http_hosts=["127.0.0.1"],
        timeout=2.0,
    )
    yield provider
    await provider.aclose()
