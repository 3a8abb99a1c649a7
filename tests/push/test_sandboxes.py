"""The sandboxes enforce what the real services do, and their control API works over plain HTTP."""

from __future__ import annotations

import time

import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from push_helpers import DEVICE, KEY_ID, TEAM_ID, TOPIC, note

from tidings.push.base import Outcome, Target
from tidings.push.fcm import FcmProvider
from tidings.push.transport import Transport
from tidings.sandbox.apns import ApnsSandbox
from tidings.sandbox.fcm import FcmSandbox


def encode_headers(pairs: object) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in pairs]  # type: ignore[attr-defined]


def bearer(key: ec.EllipticCurvePrivateKey, iat: float | None = None) -> str:
    token = jwt.encode(
        {"iss": TEAM_ID, "iat": int(iat or time.time())}, key, "ES256", headers={"kid": KEY_ID}
    )
    return f"bearer {token}"


@pytest.mark.parametrize(
    ("headers", "payload", "status", "reason"),
    [
        (
            {"apns-push-type": "background", "apns-priority": "10"},
            {"aps": {"content-available": 1}},
            400,
            "BadPriority",
        ),
        (
            {"apns-push-type": "background", "apns-priority": "5"},
            {"aps": {"content-available": 1, "badge": 1}},
            400,
            "InvalidPushType",
        ),
        ({"apns-push-type": "alert"}, {"aps": {"alert": "x"}, "pad": "y" * 5000}, 413, "PayloadTooLarge"),
        ({"apns-push-type": "alert", "apns-topic": ""}, {"aps": {"alert": "x"}}, 400, "MissingTopic"),
        ({"apns-push-type": "alert", "apns-id": "not-a-uuid"}, {"aps": {"alert": "x"}}, 400, "BadMessageId"),
        ({"apns-push-type": "telepathy"}, {"aps": {"alert": "x"}}, 400, "InvalidPushType"),
        (
            {"apns-push-type": "alert", "authorization": ""},
            {"aps": {"alert": "x"}},
            403,
            "MissingProviderToken",
        ),
        ({"apns-push-type": "alert"}, {"aps": {"alert": "x"}}, 200, ""),
    ],
)
async def test_apns_sandbox_applies_apples_rules(
    apns_sandbox: ApnsSandbox,
    apns_key: ec.EllipticCurvePrivateKey,
    headers: dict[str, str],
    payload: dict[str, object],
    status: int,
    reason: str,
) -> None:
    sent = {"apns-topic": TOPIC, "authorization": bearer(apns_key), **headers}
    sent = {k: v for k, v in sent.items() if v}
    transport = Transport(timeout=5.0, http1=False)
    try:
        response = await transport.request(
            apns_sandbox.url,
            f"/3/device/{DEVICE}".encode(),
            encode_headers(sent.items()),
            orjson.dumps(payload),
        )
    finally:
        await transport.aclose()
    assert response.status == status
    assert (orjson.loads(response.body)["reason"] if response.body else "") == reason


async def test_apns_sandbox_rejects_tokens_older_than_an_hour(
    apns_sandbox: ApnsSandbox, apns_key: ec.EllipticCurvePrivateKey
) -> None:
    transport = Transport(timeout=5.0, http1=False)
    headers = {
        "apns-topic": TOPIC,
        "apns-push-type": "alert",
        "authorization": bearer(apns_key, time.time() - 3700),
    }
    try:
        response = await transport.request(
            apns_sandbox.url,
            f"/3/device/{DEVICE}".encode(),
            encode_headers(headers.items()),
            b'{"aps":{"alert":"x"}}',
        )
    finally:
        await transport.aclose()
    assert (response.status, orjson.loads(response.body)["reason"]) == (403, "ExpiredProviderToken")


async def test_control_api_records_filter_and_reset(
    apns_sandbox: ApnsSandbox, apns_key: ec.EllipticCurvePrivateKey
) -> None:
    transport = Transport(timeout=5.0, http1=False)
    headers = {"apns-topic": TOPIC, "apns-push-type": "alert", "authorization": bearer(apns_key)}
    try:
        for token in (DEVICE, "b4" * 32):
            await transport.request(
                apns_sandbox.url,
                f"/3/device/{token}".encode(),
                encode_headers(headers.items()),
                b'{"aps":{"alert":"x"}}',
            )
    finally:
        await transport.aclose()
    async with httpx.AsyncClient(base_url=apns_sandbox.control_url) as client:
        records = (await client.get("/_sandbox/records", params={"token": DEVICE})).json()["records"]
        assert [r["token"] for r in records] == [DEVICE]
        assert (await client.post("/_sandbox/rules", json={"status": 410})).status_code == 400  # no token
        await client.post(
            "/_sandbox/rules", json=[{"token": DEVICE, "status": 410, "reason": "Unregistered"}]
        )
        assert len((await client.get("/_sandbox/rules")).json()["rules"]) == 1
        await client.delete("/_sandbox/rules")
        await client.delete("/_sandbox/records")
        assert (await client.get("/_sandbox/records")).json()["records"] == []
    assert not apns_sandbox.state.rules


async def test_fcm_slow_answer_times_out_as_retry_later(fcm_sandbox: FcmSandbox) -> None:
    provider = FcmProvider(
        service_account_info=fcm_sandbox.service_account_info(),
        base_url=fcm_sandbox.url,
        token_url=fcm_sandbox.token_url,
        clock=time.time,
        timeout=0.3,
    )
    token = "fcm-registration-token-0123456789abcdef"
    async with httpx.AsyncClient() as client:
        await client.post(f"{fcm_sandbox.control_url}/_sandbox/rules", json={"token": token, "delay": 30})
    try:
        result = await provider.send(Target("d", "fcm", token), provider.prepare(note()))
    finally:
        await provider.aclose()
    assert result.outcome is Outcome.retry_later and result.reason.startswith("timeout")


async def test_fcm_sandbox_refuses_a_malformed_message(fcm_sandbox: FcmSandbox, fcm: FcmProvider) -> None:
    token = await fcm._access_token()
    send_url = f"{fcm_sandbox.control_url}/v1/projects/demo-project/messages:send"  # its HTTP/1.1 side
    async with httpx.AsyncClient() as client:
        response = await client.post(
            send_url,
            headers={"authorization": f"Bearer {token}"},
            json={"message": {"token": "x" * 40, "data": {"n": 1}}},
        )
        unauthenticated = await client.post(send_url, json={"message": {"token": "x" * 40}})
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["errorCode"] == "INVALID_ARGUMENT"
    assert unauthenticated.status_code == 401


async def test_apns_sandbox_limits_provider_token_updates(
    apns_sandbox: ApnsSandbox, apns_key: ec.EllipticCurvePrivateKey
) -> None:
    transport = Transport(timeout=5.0, http1=False)
    path, body = f"/3/device/{DEVICE}".encode(), b'{"aps":{"alert":"x"}}'

    def headers(iat: float) -> list[tuple[bytes, bytes]]:
        return encode_headers(
            {"apns-topic": TOPIC, "apns-push-type": "alert", "authorization": bearer(apns_key, iat)}.items()
        )

    try:
        first = await transport.request(apns_sandbox.url, path, headers(time.time() - 60), body)
        # a new token a minute later
        second = await transport.request(apns_sandbox.url, path, headers(time.time()), body)
    finally:
        await transport.aclose()
    assert first.status == 200
    assert (second.status, orjson.loads(second.body)["reason"]) == (429, "TooManyProviderTokenUpdates")
