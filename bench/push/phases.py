"""One benchmark phase per sender: time-bounded, a fixed window of sends in flight, CPU of both sides measured."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psutil

from tidings.events import PushSpec
from tidings.push import ece
from tidings.push.apns import ApnsProvider
from tidings.push.base import Notification, Outcome, Target
from tidings.push.vapid import VapidKey
from tidings.push.webpush import WebPushProvider

KEY_ID, TEAM_ID, TOPIC = "BENCHKEY01", "BENCHTEAM1", "com.example.bench"
NOTE = Notification(
    "1700000000000-0", "order.created", PushSpec.model_validate("silent"), {"order_id": "o-42"}
)
Send = Callable[[int], Awaitable[bool]]


@dataclass
class Phase:
    name: str
    sent: int
    ok: int
    seconds: float
    client_cpu: float
    server_cpu: float

    @property
    def rate(self) -> float:
        return self.sent / self.seconds

    @property
    def client_us(self) -> float:
        return self.client_cpu / max(self.sent, 1) * 1e6

    @property
    def server_us(self) -> float:
        return self.server_cpu / max(self.sent, 1) * 1e6

    @property
    def cpu_rate(self) -> float:
        """Notifications per second of sender CPU: the rate a worker reaches when the far end keeps up."""
        return self.sent / self.client_cpu if self.client_cpu else 0.0


def _cpu(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    times = process.cpu_times()
    return float(times.user + times.system)


async def run_phase(
    name: str, send: Send, *, seconds: float, concurrency: int, server: psutil.Process | None
) -> Phase:
    for i in range(20):  # warm up: connections open, settings exchanged, caches filled
        await send(i)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    counts = [0, 0]

    async def lane(start: int) -> None:
        i = start
        while loop.time() < deadline:
            ok = await send(i)  # not `counts[1] += await ...`: that reads before the await and loses updates
            counts[0] += 1
            counts[1] += ok
            i += concurrency

    s0, c0, t0 = _cpu(server), time.process_time(), time.perf_counter()
    await asyncio.gather(*(lane(k) for k in range(concurrency)))
    t1, c1, s1 = time.perf_counter(), time.process_time(), _cpu(server)
    return Phase(name, counts[0], counts[1], t1 - t0, c1 - c0, s1 - s0)


def encryption_phase(seconds: float, subscription: dict[str, Any]) -> Phase:
    """The bare RFC 8291 rate: a fresh key and salt per message, as every real send does."""
    plaintext = ece_plaintext()
    p256dh, auth = (
        ece.b64url_decode(subscription["keys"]["p256dh"]),
        ece.b64url_decode(subscription["keys"]["auth"]),
    )
    count, c0, t0 = 0, time.process_time(), time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            ece.encrypt(plaintext, p256dh, auth)
        count += 100
    return Phase(
        "RFC 8291 encryption alone", count, count, time.perf_counter() - t0, time.process_time() - c0, 0.0
    )


def ece_plaintext() -> bytes:
    from tidings.push import payloads

    return payloads.webpush_plaintext(NOTE)


def tidings_apns(provider: ApnsProvider) -> Send:
    prepared = provider.prepare(NOTE)
    token = "ab" * 32

    async def send(i: int) -> bool:
        result = await provider.send(Target(f"d{i}", "apns", token), prepared)
        return result.outcome is Outcome.delivered

    return send


def aioapns_sender(pem: bytes, url: str) -> tuple[Send, Any]:
    from aioapns import APNs, NotificationRequest, PushType
    from aioapns.connection import APNsKeyConnectionPool

    host, port = url.removeprefix("http://").split(":")

    class PlainPool(APNsKeyConnectionPool):
        # aioapns always dials Apple over TLS; the sandbox is h2c on 127.0.0.1.
        async def _create_connection(self, apns_protocol_factory: Any) -> Any:
            _, protocol = await self.loop.create_connection(apns_protocol_factory, host=host, port=int(port))
            return protocol

    client = APNs(key=pem.decode(), key_id=KEY_ID, team_id=TEAM_ID, topic=TOPIC, use_sandbox=True)
    client.pool.__class__ = PlainPool
    message = json.loads(ApnsProvider.__dict__["prepare"](_FakeApns(), NOTE).payload)

    async def send(i: int) -> bool:
        request = NotificationRequest(
            device_token="ab" * 32,
            message=message,
            notification_id=str(uuid.uuid4()),
            priority=5,
            push_type=PushType.BACKGROUND,
        )
        return bool((await client.send_notification(request)).is_successful)

    return send, client


class _FakeApns:
    """Lets the baseline reuse the exact payload tidings sends (prepare needs only a clock)."""

    clock = staticmethod(time.time)


def tidings_webpush(provider: WebPushProvider, subscriptions: list[dict[str, Any]]) -> Send:
    prepared = provider.prepare(NOTE)
    targets = [Target(f"w{i}", "webpush", s["endpoint"], **s["keys"]) for i, s in enumerate(subscriptions)]

    async def send(i: int) -> bool:
        result = await provider.send(targets[i % len(targets)], prepared)
        return result.outcome is Outcome.delivered

    return send


def pywebpush_sender(key: VapidKey, subscriptions: list[dict[str, Any]]) -> tuple[Send, Any]:
    import aiohttp
    from py_vapid import Vapid
    from pywebpush import WebPushException, webpush_async

    vapid = Vapid.from_pem(key.to_pem())
    data = ece_plaintext().decode()
    session = aiohttp.ClientSession()

    async def send(i: int) -> bool:
        try:
            await webpush_async(
                subscriptions[i % len(subscriptions)],
                data,
                vapid_private_key=vapid,
                vapid_claims={"sub": "mailto:bench@example.com"},
                ttl=86400,
                aiohttp_session=session,
            )
        except WebPushException:
            return False
        return True

    return send, session
