"""FCM provider against the FCM sandbox: OAuth token exchange and caching, message shape, every outcome."""

from __future__ import annotations

import time

import httpx
import pytest
from push_helpers import note

from support import ManualClock
from tidings.push.base import Outcome, Target
from tidings.push.fcm import FcmProvider
from tidings.sandbox.fcm import FcmSandbox

TOKEN = "fcm-registration-token-0123456789abcdef"


def target(token: str = TOKEN) -> Target:
    return Target(device_id="dev-1", provider="fcm", token=token)


async def rule(sandbox: FcmSandbox, **body: object) -> None:
    async with httpx.AsyncClient() as client:
        (await client.post(f"{sandbox.control_url}/_sandbox/rules", json=body)).raise_for_status()


def sends(sandbox: FcmSandbox) -> list[dict[str, object]]:
    return [r for r in sandbox.state.records if r.get("kind") == "send"]


async def test_silent_message_shape(fcm: FcmProvider, fcm_sandbox: FcmSandbox) -> None:
    result = await fcm.send(target(), fcm.prepare(note("silent", {"order_id": 42, "done": True})))
    assert result.outcome is Outcome.delivered
    (record,) = sends(fcm_sandbox)
    assert record["message"] == {
        "token": TOKEN,
        "data": {"type": "order.created", "event_id": "1700000000000-0", "order_id": "42"},
        "android": {"priority": "NORMAL"},
        "apns": {
            "headers": {"apns-push-type": "background", "apns-priority": "5"},
            "payload": {"aps": {"content-available": 1}},
        },
        "webpush": {"headers": {"TTL": "86400", "Urgency": "normal"}},
    }


async def test_alert_message_shape(fcm: FcmProvider, fcm_sandbox: FcmSandbox, clock: ManualClock) -> None:
    spec = {
        "mode": "alert",
        "title": "T",
        "body": "B",
        "collapse_key": "order-42",
        "ttl": 120,
        "data": {"order_id": 42, "urgent": True},
    }
    assert (await fcm.send(target(), fcm.prepare(note(spec)))).outcome is Outcome.delivered
    message = sends(fcm_sandbox)[0]["message"]
    assert isinstance(message, dict)
    assert message["data"] == {
        "type": "order.created",
        "event_id": "1700000000000-0",
        "order_id": "42",
        "urgent": "true",
    }
    assert message["notification"] == {"title": "T", "body": "B"}
    assert message["android"] == {
        "priority": "HIGH",
        "ttl": "120s",
        "collapse_key": "order-42",
        "notification": {"tag": "order-42"},
    }
    headers = message["apns"]["headers"]
    assert headers["apns-push-type"] == "alert" and headers["apns-priority"] == "10"
    assert headers["apns-collapse-id"] == "order-42"
    assert abs(int(headers["apns-expiration"]) - (clock() + 120)) <= 2
    assert message["apns"]["payload"] == {"aps": {"alert": {"title": "T", "body": "B"}}}
    assert message["webpush"] == {"headers": {"TTL": "120", "Urgency": "high", "Topic": "order-42"}}


async def test_access_token_is_cached_until_near_expiry(
    fcm: FcmProvider, fcm_sandbox: FcmSandbox, clock: ManualClock
) -> None:
    prepared = fcm.prepare(note())
    for _ in range(3):
        assert (await fcm.send(target(), prepared)).outcome is Outcome.delivered
    assert fcm.token_fetches == 1 and fcm_sandbox.tokens_issued == 1
    clock.advance(3000)  # ten minutes before expiry: still cached
    assert (await fcm.send(target(), prepared)).outcome is Outcome.delivered
    assert fcm.token_fetches == 1
    clock.advance(310)  # inside the five-minute margin before expiry
    assert (await fcm.send(target(), prepared)).outcome is Outcome.delivered
    assert fcm.token_fetches == 2 and fcm_sandbox.tokens_issued == 2


async def test_refused_access_token_is_replaced_once(fcm: FcmProvider, fcm_sandbox: FcmSandbox) -> None:
    prepared = fcm.prepare(note())
    await fcm.send(target(), prepared)
    fcm_sandbox.tokens.clear()  # the sandbox forgets (revokes) every token it issued
    assert (await fcm.send(target(), prepared)).outcome is Outcome.delivered
    assert fcm.token_fetches == 2


@pytest.mark.parametrize(
    ("code", "outcome", "status"),
    [
        ("UNREGISTERED", Outcome.dead_token, 404),
        ("SENDER_ID_MISMATCH", Outcome.dead_token, 403),
        ("QUOTA_EXCEEDED", Outcome.retry_later, 429),
        ("UNAVAILABLE", Outcome.retry_later, 503),
        ("INTERNAL", Outcome.retry_later, 500),
        ("THIRD_PARTY_AUTH_ERROR", Outcome.credentials, 401),
        ("INVALID_ARGUMENT", Outcome.rejected, 400),  # not about the token: the message is wrong
        ("UNSPECIFIED_ERROR", Outcome.retry_later, 500),
    ],
)
async def test_every_fcm_error_code_maps_to_its_outcome(
    fcm: FcmProvider, fcm_sandbox: FcmSandbox, code: str, outcome: Outcome, status: int
) -> None:
    await rule(fcm_sandbox, token=TOKEN, reason=code)
    result = await fcm.send(target(), fcm.prepare(note()))
    assert (result.outcome, result.status) == (outcome, status)
    assert result.reason.startswith(code)


async def test_quota_exceeded_backs_off_60s_unless_told_otherwise(
    fcm: FcmProvider, fcm_sandbox: FcmSandbox
) -> None:
    await rule(fcm_sandbox, token=TOKEN, reason="QUOTA_EXCEEDED", times=1)
    assert (await fcm.send(target(), fcm.prepare(note()))).retry_after == 60
    await rule(fcm_sandbox, token=TOKEN, reason="UNAVAILABLE", retry_after=12, times=1)
    assert (await fcm.send(target(), fcm.prepare(note()))).retry_after == 12


async def test_invalid_registration_token_is_dead(fcm: FcmProvider) -> None:
    result = await fcm.send(target("short"), fcm.prepare(note()))
    assert result.outcome is Outcome.dead_token and "registration token" in result.reason


async def test_not_configured_is_skipped() -> None:
    provider = FcmProvider(service_account_info=None, clock=time.time)
    assert not provider.configured and "TIDINGS_FCM_CREDENTIALS" in provider.missing
    result = await provider.send(target(), provider.prepare(note()))
    assert (result.outcome, result.reason) == (Outcome.skipped, "not_configured")
    await provider.aclose()


async def test_unreachable_token_endpoint_is_retry_later(fcm_sandbox: FcmSandbox) -> None:
    provider = FcmProvider(
        service_account_info=fcm_sandbox.service_account_info(),
        base_url=fcm_sandbox.url,
        token_url="http://127.0.0.1:9/token",
        clock=time.time,
        timeout=1.0,
    )
    try:
        result = await provider.send(target(), provider.prepare(note()))
    finally:
        await provider.aclose()
    assert result.outcome is Outcome.retry_later and result.reason.startswith("oauth")
