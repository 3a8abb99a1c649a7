"""APNs provider against the h2c sandbox: exact requests, every outcome row, provider-token lifecycle."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from push_helpers import DEVICE, KEY_ID, TEAM_ID, TOPIC, note

from support import ManualClock
from tidings.push.apns import APNS_ID_NAMESPACE, ApnsProvider, apns_id
from tidings.push.base import Outcome, Target
from tidings.sandbox.apns import ApnsSandbox


def target(token: str = DEVICE, **kw: str) -> Target:
    return Target(device_id=kw.pop("device_id", "dev-1"), provider="apns", token=token, **kw)


async def rule(sandbox: ApnsSandbox, **body: object) -> None:
    async with httpx.AsyncClient() as client:
        (await client.post(f"{sandbox.control_url}/_sandbox/rules", json=body)).raise_for_status()


async def test_silent_push_is_exactly_content_available_background_priority_5(
    apns: ApnsProvider, apns_sandbox: ApnsSandbox
) -> None:
    result = await apns.send(target(), apns.prepare(note("silent", {"order_id": 42, "title": "secret"})))
    assert result.outcome is Outcome.delivered and result.status == 200
    (record,) = apns_sandbox.state.records
    assert record["path"] == f"/3/device/{DEVICE}"
    assert record["payload"] == {
        "aps": {"content-available": 1},
        "type": "order.created",
        "event_id": "1700000000000-0",
        "order_id": 42,
    }
    headers = record["headers"]
    assert headers["apns-push-type"] == "background" and headers["apns-priority"] == "5"
    assert headers["apns-topic"] == TOPIC
    assert headers["apns-id"] == str(
        uuid.uuid5(uuid.UUID("6f0d3c1e-5b8a-4e0a-9a55-7d1c2b9e4f10"), "1700000000000-0/dev-1")
    )
    assert "apns-expiration" not in headers and "apns-collapse-id" not in headers
    assert record["jwt"]["iss"] == TEAM_ID and record["jwt"]["kid"] == KEY_ID


async def test_alert_push_headers_and_payload(
    apns: ApnsProvider, apns_sandbox: ApnsSandbox, clock: ManualClock
) -> None:
    spec = {
        "mode": "alert",
        "title": "Order 42",
        "body": "Claimed",
        "badge": 3,
        "sound": "default",
        "thread_id": "order-42",
        "ttl": 600,
        "data": {"order_id": "42"},
    }
    prepared = apns.prepare(note(spec))
    assert (await apns.send(target(topic=TOPIC), prepared)).outcome is Outcome.delivered
    (record,) = apns_sandbox.state.records
    assert record["payload"] == {
        "aps": {
            "alert": {"title": "Order 42", "body": "Claimed"},
            "badge": 3,
            "sound": "default",
            "thread-id": "order-42",
        },
        "type": "order.created",
        "event_id": "1700000000000-0",
        "order_id": "42",
    }
    headers = record["headers"]
    assert headers["apns-push-type"] == "alert" and headers["apns-priority"] == "10"
    assert abs(int(headers["apns-expiration"]) - (clock() + 600)) <= 2
    assert headers["apns-collapse-id"] == "order-42"
    normal = apns.prepare(note({"mode": "alert", "body": "x", "priority": "normal"}))
    assert normal.headers["apns-priority"] == "5"


async def test_a_token_that_could_alter_the_path_is_refused_locally(
    apns: ApnsProvider, apns_sandbox: ApnsSandbox
) -> None:
    for token in ("../../3/device/ab", "ab cd", "ab\r\nx: y", "é" * 64):
        result = await apns.send(target(token), apns.prepare(note()))
        assert (result.outcome, result.reason) == (Outcome.dead_token, "BadDeviceToken")
    assert not apns_sandbox.state.records


def test_apns_id_is_stable_per_event_and_device() -> None:
    assert apns_id("e1", "d1") == apns_id("e1", "d1") != apns_id("e1", "d2")
    for event, device in [("e1", "d1"), ("1700000000000-0", "dévice/7"), ("", "")]:  # the same ids as ever
        assert apns_id(event, device) == str(uuid.uuid5(APNS_ID_NAMESPACE, f"{event}/{device}"))


@pytest.mark.parametrize(
    ("status", "reason", "outcome"),
    [
        (410, "Unregistered", Outcome.dead_token),
        (410, "ExpiredToken", Outcome.dead_token),
        (400, "BadDeviceToken", Outcome.dead_token),
        (400, "DeviceTokenNotForTopic", Outcome.dead_token),
        (400, "TopicDisallowed", Outcome.dead_token),
        (429, "TooManyRequests", Outcome.retry_later),
        (500, "InternalServerError", Outcome.retry_later),
        (503, "ServiceUnavailable", Outcome.retry_later),
        (403, "InvalidProviderToken", Outcome.credentials),
        (413, "PayloadTooLarge", Outcome.rejected),
        (400, "BadTopic", Outcome.rejected),
        (400, "SomethingNew", Outcome.rejected),
        (599, "SomethingNew", Outcome.retry_later),
    ],
)
async def test_every_apns_failure_maps_to_its_outcome(
    apns: ApnsProvider, apns_sandbox: ApnsSandbox, status: int, reason: str, outcome: Outcome
) -> None:
    await rule(apns_sandbox, token=DEVICE, status=status, reason=reason)
    result = await apns.send(target(), apns.prepare(note()))
    assert (result.outcome, result.reason, result.status) == (outcome, reason, status)


async def test_retry_after_is_honoured(apns: ApnsProvider, apns_sandbox: ApnsSandbox) -> None:
    await rule(apns_sandbox, token=DEVICE, status=429, reason="TooManyRequests", retry_after=37)
    result = await apns.send(target(), apns.prepare(note()))
    assert result.outcome is Outcome.retry_later and result.retry_after == 37


async def test_sandbox_validates_token_format_and_topic_for_real(apns: ApnsProvider) -> None:
    bad = await apns.send(target("zz" * 32), apns.prepare(note()))  # the sandbox's own check, over the wire
    assert (bad.outcome, bad.reason) == (Outcome.dead_token, "BadDeviceToken")
    other = await apns.send(target(topic="com.other.app"), apns.prepare(note()))
    assert (other.outcome, other.reason) == (Outcome.dead_token, "TopicDisallowed")


async def test_provider_token_is_shared_and_refreshed_after_40_minutes(
    apns: ApnsProvider, apns_sandbox: ApnsSandbox, clock: ManualClock
) -> None:
    prepared = apns.prepare(note())
    for i in range(5):
        assert (await apns.send(target(device_id=f"d{i}"), prepared)).outcome is Outcome.delivered
    assert apns.token_mints == 1
    clock.advance(39 * 60)
    await apns.send(target(), prepared)
    assert apns.token_mints == 1
    clock.advance(2 * 60)
    assert (await apns.send(target(), prepared)).outcome is Outcome.delivered
    assert apns.token_mints == 2
    assert len({r["jwt"]["iat"] for r in apns_sandbox.state.records}) == 2


async def test_expired_provider_token_is_refreshed_once_and_resent(
    apns: ApnsProvider, apns_sandbox: ApnsSandbox
) -> None:
    prepared = apns.prepare(note())
    await apns.send(target(), prepared)
    await rule(apns_sandbox, token=DEVICE, status=403, reason="ExpiredProviderToken", times=1)
    result = await apns.send(target(), prepared)
    assert result.outcome is Outcome.delivered
    assert apns.token_mints == 2
    assert [r["status"] for r in apns_sandbox.state.records] == [200, 403, 200]


async def test_a_really_old_provider_token_ends_as_credentials_after_one_refresh(
    apns_sandbox: ApnsSandbox, apns_pem: bytes
) -> None:
    # The provider's clock is two hours behind Apple's: every token it mints is already expired.
    provider = ApnsProvider(
        key_pem=apns_pem,
        key_id=KEY_ID,
        team_id=TEAM_ID,
        topic=TOPIC,
        base_url=apns_sandbox.url,
        clock=lambda: time.time() - 7200,
    )
    try:
        result = await provider.send(target(), provider.prepare(note()))
    finally:
        await provider.aclose()
    assert (result.outcome, result.reason) == (Outcome.credentials, "ExpiredProviderToken")
    assert provider.token_mints == 2


async def test_token_signed_by_another_key_is_invalid(apns_sandbox: ApnsSandbox) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    provider = ApnsProvider(
        key_pem=other, key_id=KEY_ID, team_id=TEAM_ID, topic=TOPIC, base_url=apns_sandbox.url, clock=time.time
    )
    try:
        result = await provider.send(target(), provider.prepare(note()))
    finally:
        await provider.aclose()
    assert (result.outcome, result.reason, result.status) == (
        Outcome.credentials,
        "InvalidProviderToken",
        403,
    )


async def test_goaway_then_next_send_reconnects(apns: ApnsProvider, apns_sandbox: ApnsSandbox) -> None:
    prepared = apns.prepare(note())
    assert (await apns.send(target(), prepared)).outcome is Outcome.delivered
    async with httpx.AsyncClient() as client:
        closed = (await client.post(f"{apns_sandbox.control_url}/_sandbox/goaway")).json()["closed"]
    assert closed == 1
    assert (await apns.send(target(), prepared)).outcome is Outcome.delivered
    assert apns_sandbox.connections_opened == 2


async def test_a_hanging_response_times_out_without_stalling_other_sends(
    apns_sandbox: ApnsSandbox, apns_pem: bytes
) -> None:
    slow, fast = "b2" * 32, "c3" * 32
    await rule(apns_sandbox, token=slow, status=200, delay=30)
    provider = ApnsProvider(
        key_pem=apns_pem,
        key_id=KEY_ID,
        team_id=TEAM_ID,
        topic=TOPIC,
        base_url=apns_sandbox.url,
        clock=time.time,
        timeout=0.5,
    )
    prepared = provider.prepare(note())
    # No warm-up: the first sends share the connection being opened (httpcore, by contrast, allows one stream
    # until it has read the server's SETTINGS, so there the fast sends would queue behind the hanging one).
    started = time.monotonic()
    done: dict[str, float] = {}

    async def send(token: str) -> Outcome:
        result = await provider.send(target(token, device_id=token[:4]), prepared)
        done[token] = time.monotonic() - started
        return result.outcome

    try:
        async with asyncio.timeout(5):
            outcomes = await asyncio.gather(send(slow), *(send(fast) for _ in range(10)))
    finally:
        await provider.aclose()
    assert outcomes[0] is Outcome.retry_later
    assert set(outcomes[1:]) == {Outcome.delivered}
    assert done[fast] < 0.4 <= done[slow] < 2.0


async def test_not_configured_is_skipped_without_network() -> None:
    provider = ApnsProvider(key_pem=None, key_id="", team_id="", topic="", clock=time.time)
    assert not provider.configured and "TIDINGS_APNS_KEY" in provider.missing
    result = await provider.send(target(), provider.prepare(note()))
    assert (result.outcome, result.reason) == (Outcome.skipped, "not_configured")
    await provider.aclose()
