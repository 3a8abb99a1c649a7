"""JWT verification: algorithms, keys, claims, and the publisher credential."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from support import PUBLISH_KEY, SECRET
from tidings.auth import TokenVerifier, TopicGrants, mint_token
from tidings.config import Settings
from tidings.errors import AuthError


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "alice", "exp": int(time.time()) + 600, **extra}


async def test_hs256_token_gives_user_and_roles() -> None:
    verifier = TokenVerifier(settings(jwt_secret=SECRET))
    principal = await verifier.verify(mint_token(SECRET, "alice", ["admin", "ops"], claims={"jti": "s1"}))
    assert principal.user_id == "alice" and principal.roles == {"admin", "ops"} and principal.jti == "s1"


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("not-a-jwt", "malformed"),
        (jwt.encode(claims(), "wrong-secret-wrong-secret-wrong-secret", algorithm="HS256"), "invalid token"),
        (jwt.encode(claims(exp=int(time.time()) - 120), SECRET, algorithm="HS256"), "expired"),
        (jwt.encode(claims(), None, algorithm="none"), "algorithm 'none'"),
        (jwt.encode({"exp": int(time.time()) + 60}, SECRET, algorithm="HS256"), "sub"),
        (jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256"), "exp"),
        (jwt.encode(claims(), SECRET, algorithm="HS512"), "algorithm 'HS512'"),
    ],
)
async def test_bad_tokens_are_refused(token: str, message: str) -> None:
    with pytest.raises(AuthError, match=message):
        await TokenVerifier(settings(jwt_secret=SECRET)).verify(token)


def _write_public(tmp_path: Path, private: Any) -> Path:
    path = tmp_path / "public.pem"
    path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


@pytest.mark.parametrize(
    ("alg", "make_key"),
    [
        ("RS256", lambda: rsa.generate_private_key(65537, 2048)),
        ("ES256", lambda: ec.generate_private_key(ec.SECP256R1())),
    ],
)
async def test_public_key_file_verifies_asymmetric_tokens(tmp_path: Path, alg: str, make_key: Any) -> None:
    private = make_key()
    verifier = TokenVerifier(settings(jwt_public_key_path=_write_public(tmp_path, private)))
    assert (await verifier.verify(jwt.encode(claims(), private, algorithm=alg))).user_id == "alice"
    other = make_key()
    with pytest.raises(AuthError):
        await verifier.verify(jwt.encode(claims(), other, algorithm=alg))


async def test_hs256_signed_with_the_public_key_is_not_accepted(tmp_path: Path) -> None:
    """Algorithm confusion: the PEM public key used as an HMAC secret must not verify."""
    private = rsa.generate_private_key(65537, 2048)
    path = _write_public(tmp_path, private)
    verifier = TokenVerifier(settings(jwt_public_key_path=path))
    signing_input = b".".join(
        base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=")
        for part in ({"alg": "HS256", "typ": "JWT"}, claims())
    )
    signature = hmac.new(path.read_bytes(), signing_input, hashlib.sha256).digest()
    forged = (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()
    with pytest.raises(AuthError):
        await verifier.verify(forged)


async def test_jwks_url_keys_are_fetched_and_chosen_by_kid() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    jwk.update(kid="k1", alg="ES256", use="sig")
    fetches = []

    def handler(request: httpx.Request) -> httpx.Response:
        fetches.append(request.url)
        return httpx.Response(200, json={"keys": [jwk]})

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    verifier = TokenVerifier(settings(jwks_url="https://id.example/jwks"), jwks_client=client)
    token = jwt.encode(claims(), private, algorithm="ES256", headers={"kid": "k1"})
    assert (await verifier.verify(token)).user_id == "alice"
    assert (await verifier.verify(token)).user_id == "alice"
    assert len(fetches) == 1  # cached
    with pytest.raises(AuthError, match="unknown key"):
        await verifier.verify(jwt.encode(claims(), private, algorithm="ES256", headers={"kid": "nope"}))


async def test_audience_and_issuer_are_checked_when_configured() -> None:
    verifier = TokenVerifier(settings(jwt_secret=SECRET, jwt_audience="shop", jwt_issuer="https://id"))
    good = jwt.encode(claims(aud="shop", iss="https://id"), SECRET, algorithm="HS256")
    assert (await verifier.verify(good)).user_id == "alice"
    for bad in (claims(aud="other", iss="https://id"), claims(aud="shop", iss="https://evil"), claims()):
        with pytest.raises(AuthError):
            await verifier.verify(jwt.encode(bad, SECRET, algorithm="HS256"))


async def test_roles_claim_may_be_a_nested_path() -> None:
    verifier = TokenVerifier(settings(jwt_secret=SECRET, roles_claim="realm_access.roles"))
    token = jwt.encode(claims(realm_access={"roles": ["admin"]}), SECRET, algorithm="HS256")
    assert (await verifier.verify(token)).roles == {"admin"}


async def test_publisher_is_the_key_or_a_jwt_with_the_publisher_role() -> None:
    verifier = TokenVerifier(settings(jwt_secret=SECRET, publish_key=PUBLISH_KEY))
    assert (await verifier.verify_publisher(PUBLISH_KEY)).has_role("publisher")
    assert (await verifier.verify_publisher(mint_token(SECRET, "svc", ["publisher"]))).user_id == "svc"
    with pytest.raises(AuthError, match="publisher role"):
        await verifier.verify_publisher(mint_token(SECRET, "alice", ["admin"]))
    with pytest.raises(AuthError):
        await verifier.verify_publisher("wrong-key")


def test_topic_grants_are_exact_names_prefix_patterns_or_everything() -> None:
    grants = TopicGrants.parse(["news", "orders.*", "a*b", "*.x", ".*", 7])
    assert grants.allows("news") and grants.allows("orders.1") and grants.allows("orders.1.lines")
    assert not grants.allows("orders") and not grants.allows("ordersx.1") and not grants.allows("news.x")
    assert not grants.allows("a*b") and not grants.allows("q.x") and not grants.allows("anything")
    assert TopicGrants.parse("news sports.*").allows("sports.golf")
    assert TopicGrants.parse(["*"]).allows("anything.at.all")
    assert not TopicGrants.parse(None).allows("news") and not TopicGrants.parse({"news": 1}).allows("news")


async def test_times_are_checked_against_the_injected_clock() -> None:
    now = 1_900_000_000.0
    verifier = TokenVerifier(settings(jwt_secret=SECRET, jwt_leeway_seconds=30), clock=lambda: now)
    token = jwt.encode({"sub": "alice", "iat": int(now), "exp": int(now) + 60}, SECRET, algorithm="HS256")
    principal = await verifier.verify(token)  # minted for the clock's "now", years from the wall clock's
    assert (principal.expires_at, principal.issued_at) == (now + 60, now)
    for claims_, message in [
        ({"exp": now - 31}, "expired"),
        ({"exp": now + 60, "nbf": now + 31}, r"not yet valid \(nbf\)"),
        ({"exp": now + 60, "iat": now + 31}, r"issued in the future \(iat\)"),
        ({"exp": now + 86_400 + 31}, "TIDINGS_JWT_MAX_LIFETIME_SECONDS"),
    ]:
        with pytest.raises(AuthError, match=message):
            await verifier.verify(jwt.encode({"sub": "alice", **claims_}, SECRET, algorithm="HS256"))
    late = jwt.encode({"sub": "alice", "exp": now - 29, "nbf": now + 29}, SECRET, algorithm="HS256")
    assert (await verifier.verify(late)).user_id == "alice"  # within the leeway, both ways


@pytest.mark.parametrize("value", [10**400, -1, 1e300, float("nan"), float("inf"), True, "1", [1], None])
async def test_a_time_claim_that_is_not_a_plausible_time_is_refused(value: object) -> None:
    verifier = TokenVerifier(settings(jwt_secret=SECRET))
    payload = json.dumps({"sub": "alice", "exp": int(time.time()) + 60, "nbf": value})
    with pytest.raises(AuthError, match="`nbf` must be a time"):
        await verifier.verify(jwt.api_jws.encode(payload.encode(), SECRET, algorithm="HS256"))
