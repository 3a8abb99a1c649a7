"""Every registration rule, checked on the models directly (the HTTP tests check that 422s name the field)."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import pytest
from pydantic import ValidationError

from registry.helpers import apns_body, b64url, fcm_body, p256dh, webpush_body
from tidings.push.endpoints import EndpointPolicy
from tidings.registry.validation import DeviceIn, PolicyViolation, check_policy

# A point with valid encoding but not on P-256: y changed by one.
_GOOD = p256dh()
_raw = bytearray(base64.urlsafe_b64decode(_GOOD + "=="))
_raw[-1] ^= 1
OFF_CURVE = b64url(bytes(_raw))


def error_fields(body: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        DeviceIn.model_validate(body)
    return [".".join(str(p) for p in e["loc"]) for e in info.value.errors()]


def keys(**over: str) -> dict[str, str]:
    return {"p256dh": p256dh(), "auth": b64url(secrets.token_bytes(16)), **over}


def sub(**over: str) -> dict[str, Any]:
    """A Web Push registration whose keys are overridden."""
    return {**webpush_body(), "subscription": {"endpoint": "https://p.example/x", "keys": keys(**over)}}


def flat(**over: Any) -> dict[str, Any]:
    """The flat Web Push form: token=endpoint, p256dh and auth at the top level."""
    body = {"provider": "webpush", "platform": "web", "token": "https://p.example/x", "p256dh": _GOOD,
            "auth": b64url(b"a" * 16), **over}  # fmt: skip
    return {k: v for k, v in body.items() if v is not None}


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("unknown provider", {"provider": "hms", "platform": "android", "token": "x"}, "provider"),
    ("unknown platform", {"provider": "fcm", "platform": "windows", "token": "x"}, "platform"),
    ("apns on android", apns_body(platform="android"), "platform"),
    ("webpush on ios", {**webpush_body(), "platform": "ios"}, "platform"),
    ("apns token missing", {"provider": "apns", "platform": "ios"}, "token"),
    ("apns token odd length", apns_body("abc" * 11), "token"),
    ("apns token not hex", apns_body("zz" * 32), "token"),
    ("apns token too short", apns_body("ab" * 15), "token"),
    ("apns token too long", apns_body("ab" * 101), "token"),
    ("fcm token empty", fcm_body(""), "token"),
    ("fcm token with space", fcm_body("abc def"), "token"),
    ("fcm token with control char", fcm_body("abc\ndef"), "token"),
    ("fcm token non-ascii", fcm_body("tökén"), "token"),
    ("fcm token over 4096", fcm_body("a" * 4097), "token"),
    ("environment on fcm", fcm_body(environment="sandbox"), "environment"),
    ("bad environment", apns_body(environment="staging"), "environment"),
    ("subscription on apns", {**apns_body(), "subscription": webpush_body()["subscription"]}, "subscription"),
    ("p256dh on fcm", fcm_body(p256dh=p256dh()), "p256dh"),
    ("webpush without subscription", {"provider": "webpush", "platform": "web"}, "subscription"),
    ("webpush both forms", {**webpush_body(), "token": "https://fcm.googleapis.com/x"}, "subscription"),
    ("endpoint not https", webpush_body("ftp://push.example/x"), "subscription.endpoint"),
    ("endpoint without host", webpush_body("https:///x"), "subscription.endpoint"),
    ("endpoint with credentials", webpush_body("https://u:p@push.example/x"), "subscription.endpoint"),
    ("endpoint with space", webpush_body("https://push.example/a b"), "subscription.endpoint"),
    ("endpoint bad port", webpush_body("https://push.example:99999/x"), "subscription.endpoint"),
    ("endpoint too long", webpush_body("https://push.example/" + "a" * 2100), "subscription.endpoint"),
    ("p256dh not base64url", sub(p256dh="a+b/"), "subscription.keys.p256dh"),
    ("p256dh wrong length", sub(p256dh=b64url(b"\4" * 33)), "subscription.keys.p256dh"),
    ("p256dh compressed point", sub(p256dh=b64url(b"\2" + b"\1" * 64)), "subscription.keys.p256dh"),
    ("p256dh off the curve", sub(p256dh=OFF_CURVE), "subscription.keys.p256dh"),
    ("auth not 16 bytes", sub(auth=b64url(b"x" * 15)), "subscription.keys.auth"),
    ("flat form without auth", flat(auth=None), "auth"),
    ("flat form off-curve key", flat(p256dh=OFF_CURVE), "p256dh"),
    ("flat form bad endpoint", flat(token="javascript:alert(1)"), "token"),
    ("bad locale", fcm_body(locale="en GB"), "locale"),
    ("unknown timezone", fcm_body(timezone="Mars/Olympus"), "timezone"),
    ("timezone path traversal", fcm_body(timezone="../../etc/passwd"), "timezone"),
    ("name too long", fcm_body(name="n" * 129), "name"),
    ("app_id with space", fcm_body(app_id="com.example app"), "app_id"),
    ("bad topic", fcm_body(topics=["ok", "no spaces"]), "topics"),
    ("too many topics", fcm_body(topics=[f"t{i}" for i in range(51)]), "topics"),
    ("unknown field", fcm_body(user_id="someone-else"), "user_id"),
    ("token not a string", fcm_body(12345), "token"),
]


@pytest.mark.parametrize(("case", "body", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_registration_names_the_field(case: str, body: dict[str, Any], field: str) -> None:
    assert field in error_fields(body), case


def test_valid_forms_are_normalised() -> None:
    apns = DeviceIn.model_validate(apns_body("AB" * 32))
    assert apns.token == "ab" * 32 and apns.environment == "production"
    assert (
        DeviceIn.model_validate(apns_body(environment="sandbox", platform="macos")).environment == "sandbox"
    )
    assert DeviceIn.model_validate(fcm_body(platform="ios")).platform == "ios"  # FCM also serves Apple apps
    sub = webpush_body()
    web = DeviceIn.model_validate(sub)
    assert web.token == sub["subscription"]["endpoint"] and web.p256dh and web.auth
    padded = {**sub["subscription"]["keys"], "auth": sub["subscription"]["keys"]["auth"] + "=="}
    again = DeviceIn.model_validate({**sub, "subscription": {**sub["subscription"], "keys": padded}})
    assert again.auth == web.auth, "padding does not change the stored key"
    assert DeviceIn.model_validate(flat()).token == "https://p.example/x"
    topics = DeviceIn.model_validate(
        fcm_body(topics=["b", "a", "b"], locale="pt-BR", timezone="Europe/Paris")
    )
    assert topics.topics == ["a", "b"]


P = EndpointPolicy
FCM = P(allowed_hosts=("fcm.googleapis.com",))
WNS = P(allowed_hosts=("*.notify.windows.com",))
APPLE = P.from_lists([], ["Web.Push.Apple.com"])
DEV = P.from_lists(["localhost"], ["fcm.googleapis.com"])
POLICY_CASES: list[tuple[str, EndpointPolicy, str, bool]] = [
    ("https any host", P(), "https://fcm.googleapis.com/fcm/send/x", True),
    ("http refused", P(), "http://push.example/x", False),
    ("http dev host", P(http_hosts=("localhost",)), "http://localhost:8080/push", True),
    ("http other host", P(http_hosts=("localhost",)), "http://evil.example/x", False),
    ("loopback ip", P(), "https://127.0.0.1/x", False),
    ("private ip", P(), "https://10.0.0.5/x", False),
    ("metadata ip", P(), "https://169.254.169.254/latest", False),
    ("cgnat ip", P(), "https://100.64.0.1/x", False),
    ("ipv6 loopback", P(), "https://[::1]/x", False),
    ("ipv4-mapped ipv6", P(), "https://[::ffff:127.0.0.1]/x", False),
    ("decimal ipv4", P(), "https://2130706433/x", False),
    ("hex ipv4", P(), "https://0x7f.1/x", False),
    ("short ipv4", P(), "https://127.1/x", False),
    ("localhost name", P(), "https://localhost/x", False),
    ("sub.localhost", P(), "https://a.localhost/x", False),
    ("public ip", P(), "https://8.8.8.8/x", True),
    ("allow-list exact", FCM, "https://fcm.googleapis.com/x", True),
    ("allow-list miss", FCM, "https://evil.example/x", False),
    ("allow-list suffix trick", FCM, "https://fcm.googleapis.com.evil.io/", False),
    ("allow-list wildcard", WNS, "https://wns2-par02p.notify.windows.com/w", True),
    ("wildcard needs a label", WNS, "https://notify.windows.com/x", False),
    ("allow-list ignores case", APPLE, "https://WEB.push.apple.com./x", True),
    ("dev host beats allow-list", DEV, "http://localhost:9/x", True),
    ("dev ip allowed", P.from_lists(["127.0.0.1"], []), "http://127.0.0.1:9000/x", True),
]  # fmt: skip


@pytest.mark.parametrize(("case", "policy", "url", "ok"), POLICY_CASES, ids=[c[0] for c in POLICY_CASES])
def test_endpoint_policy(case: str, policy: EndpointPolicy, url: str, ok: bool) -> None:
    device = DeviceIn.model_validate(webpush_body(url))
    if ok:
        check_policy(device, policy)
    else:
        with pytest.raises(PolicyViolation) as info:
            check_policy(device, policy)
        assert info.value.field == "subscription.endpoint"


def test_policy_names_token_for_the_flat_form() -> None:
    with pytest.raises(PolicyViolation) as info:
        check_policy(DeviceIn.model_validate(flat(token="http://push.example/x")), EndpointPolicy())
    assert info.value.field == "token"


def test_policy_ignores_native_providers() -> None:
    check_policy(DeviceIn.model_validate(fcm_body()), EndpointPolicy(allowed_hosts=("x",)))
