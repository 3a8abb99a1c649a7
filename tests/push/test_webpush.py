"""Web Push provider against the push-service sandbox: encryption the sandbox decrypts, VAPID, outcomes."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
from push_helpers import note

from support import ManualClock
from tidings.push.base import Outcome, Target
from tidings.push.vapid import VapidKey
from tidings.push.webpush import WebPushProvider
from tidings.sandbox.webpush import WebPushSandbox


async def subscribe(sandbox: WebPushSandbox, **options: str | bool) -> Target:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{sandbox.control_url}/_sandbox/subscriptions", json=options)
    response.raise_for_status()
    sub = response.json()
    return Target(device_id="dev-1", provider="webpush", token=sub["endpoint"], **sub["keys"])


@pytest.mark.parametrize("http1", [False, True], ids=["h2c", "http1-fallback"])
async def test_sandbox_decrypts_what_the_provider_sends(
    webpush: WebPushProvider, webpush_sandbox: WebPushSandbox, http1: bool
) -> None:
    target = await subscribe(webpush_sandbox, http1=http1)
    result = await webpush.send(target, webpush.prepare(note("silent", {"order_id": 42})))
    assert (result.outcome, result.status) == (Outcome.delivered, 201)
    (record,) = webpush_sandbox.state.records
    assert orjson.loads(record["plaintext"]) == {
        "type": "order.created",
        "event_id": "1700000000000-0",
        "order_id": 42,
    }
    headers = record["headers"]
    assert headers["ttl"] == "86400" and headers["urgency"] == "normal"
    assert headers["content-encoding"] == "aes128gcm" and "topic" not in headers
    origin = webpush_sandbox.control_url if http1 else webpush_sandbox.url
    assert record["vapid"]["aud"] == origin and record["vapid"]["sub"] == "mailto:ops@example.com"
    assert record["token"] == target.token
    # An origin without HTTP/2 is remembered and served over HTTP/1.1 from then on.
    assert webpush.transport.speaks_http2(origin) is (not http1)
    assert (await webpush.send(target, webpush.prepare(note()))).outcome is Outcome.delivered


async def test_alert_carries_notification_and_headers(
    webpush: WebPushProvider, webpush_sandbox: WebPushSandbox
) -> None:
    target = await subscribe(webpush_sandbox)
    spec = {"mode": "alert", "title": "T", "body": "B", "collapse_key": "order 42 status", "ttl": 0}
    assert (await webpush.send(target, webpush.prepare(note(spec)))).outcome is Outcome.delivered
    (record,) = webpush_sandbox.state.records
    assert record["payload"]["notification"] == {"title": "T", "body": "B", "tag": "order 42 status"}
    assert record["headers"]["ttl"] == "0" and record["headers"]["urgency"] == "high"
    assert len(record["headers"]["topic"]) == 32  # hashed into RFC 8030's 32-character alphabet


async def test_vapid_jwt_is_signed_once_per_origin_and_renewed(
    webpush: WebPushProvider, webpush_sandbox: WebPushSandbox, clock: ManualClock
) -> None:
    prepared = webpush.prepare(note())
    targets = [await subscribe(webpush_sandbox) for _ in range(3)]
    for target in targets:
        assert (await webpush.send(target, prepared)).outcome is Outcome.delivered
    assert webpush.signer is not None and webpush.signer.signed == 1
    clock.advance(11 * 3600 + 1)  # an hour before the 12 h expiry: sign a fresh one
    assert (await webpush.send(targets[0], prepared)).outcome is Outcome.delivered
    assert webpush.signer.signed == 2
    exps = {r["vapid"]["exp"] for r in webpush_sandbox.state.records}
    assert len(exps) == 2 and all(
        e - r["at"] <= 24 * 3600 for e in exps for r in webpush_sandbox.state.records
    )


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (404, Outcome.dead_token),
        (410, Outcome.dead_token),
        (429, Outcome.retry_later),
        (500, Outcome.retry_later),
        (503, Outcome.retry_later),
        (413, Outcome.rejected),
        (400, Outcome.rejected),
    ],
)
@pytest.mark.parametrize("http1", [False, True], ids=["h2c", "http1"])
async def test_every_push_service_status_maps_to_its_outcome(
    webpush: WebPushProvider, webpush_sandbox: WebPushSandbox, status: int, outcome: Outcome, http1: bool
) -> None:
    target = await subscribe(webpush_sandbox, http1=http1)
    async with httpx.AsyncClient() as client:
        rule = {"token": target.token, "status": status, "retry_after": 9}
        (await client.post(f"{webpush_sandbox.control_url}/_sandbox/rules", json=rule)).raise_for_status()
    result = await webpush.send(target, webpush.prepare(note()))
    assert (result.outcome, result.status) == (outcome, status)
    if outcome is Outcome.retry_later:
        assert result.retry_after == 9


async def test_expired_and_unknown_subscriptions_are_dead(
    webpush: WebPushProvider, webpush_sandbox: WebPushSandbox
) -> None:
    target = await subscribe(webpush_sandbox)
    async with httpx.AsyncClient() as client:
        sid = target.token.rsplit("/", 1)[1]
        await client.delete(f"{webpush_sandbox.control_url}/_sandbox/subscriptions/{sid}")
    gone = await webpush.send(target, webpush.prepare(note()))
    assert (gone.outcome, gone.status) == (Outcome.dead_token, 410)
    unknown = Target(
        "d", "webpush", f"{webpush_sandbox.url}/push/nope", p256dh=target.p256dh, auth=target.auth
    )
    assert (await webpush.send(unknown, webpush.prepare(note()))).status == 404


async def test_key_other_than_the_subscriptions_is_a_credentials_problem(
    webpush: WebPushProvider, webpush_sandbox: WebPushSandbox
) -> None:
    target = await subscribe(webpush_sandbox, application_server_key=VapidKey.generate().public_key)
    result = await webpush.send(target, webpush.prepare(note()))
    assert (result.outcome, result.status) == (Outcome.credentials, 403)


async def test_bad_subscription_keys_are_dead_without_a_request(
    webpush: WebPushProvider, webpush_sandbox: WebPushSandbox
) -> None:
    target = await subscribe(webpush_sandbox)
    broken = Target("d", "webpush", target.token, p256dh="AAAA", auth=target.auth)
    result = await webpush.send(broken, webpush.prepare(note()))
    assert result.outcome is Outcome.dead_token and result.reason.startswith("bad_subscription_keys")
    assert not webpush_sandbox.state.records


async def test_endpoints_outside_the_allowed_hosts_are_refused(vapid_key: VapidKey) -> None:
    provider = WebPushProvider(
        vapid_key=vapid_key,
        subject="mailto:a@b.c",
        clock=time.time,
        allowed_hosts=["fcm.googleapis.com", "*.push.services.mozilla.com"],
    )
    assert provider.endpoint_problem("http://fcm.googleapis.com/x") == "endpoint_not_https"
    assert provider.endpoint_problem("https://evil.example/x") == "endpoint_host_not_allowed"
    assert provider.endpoint_problem("https://updates.push.services.mozilla.com/wpush/v2/x") == ""
    result = await provider.send(
        Target("d", "webpush", "https://evil.example/x", "k", "a"), provider.prepare(note())
    )
    assert (result.outcome, result.reason) == (Outcome.rejected, "endpoint_host_not_allowed")
    await provider.aclose()


async def test_hanging_push_service_times_out_as_retry_later(
    vapid_key: VapidKey, webpush_sandbox: WebPushSandbox
) -> None:
    provider = WebPushProvider(
        vapid_key=vapid_key, subject="mailto:a@b.c", clock=time.time, http_hosts=["127.0.0.1"], timeout=0.3
    )
    target = await subscribe(webpush_sandbox)
    webpush_sandbox.state.rules.clear()
    async with httpx.AsyncClient() as client:
        rule = {"token": target.token, "delay": 30}
        await client.post(f"{webpush_sandbox.control_url}/_sandbox/rules", json=rule)
    try:
        result = await provider.send(target, provider.prepare(note()))
    finally:
        await provider.aclose()
    assert result.outcome is Outcome.retry_later and result.reason.startswith("timeout")


async def test_not_configured_is_skipped() -> None:
    provider = WebPushProvider(vapid_key=None, subject="", clock=time.time)
    assert "TIDINGS_VAPID_PRIVATE_KEY_PATH" in provider.missing
    result = await provider.send(Target("d", "webpush", "https://x/y", "k", "a"), provider.prepare(note()))
    assert (result.outcome, result.reason) == (Outcome.skipped, "not_configured")
    await provider.aclose()
