"""Token verification: who is calling (a Principal), from the application's own JWTs or the publish key.

Deliberate choices:
- The algorithm list is explicit and never contains `none`; the key is chosen by algorithm family, so an HS256
  token can never be checked against a public key used as an HMAC secret (algorithm confusion).
- `sub` and `exp` are required: a stream lives as long as its token, and a token without an end would make it
  immortal. Times (`exp`, `nbf`, `iat`) are checked here, against the injected clock, not by PyJWT: each must be
  a number of seconds between 0 and year 9999 (a validly signed `exp = 10**400` is a 401, not a crash), and `exp`
  at most `TIDINGS_JWT_MAX_LIFETIME_SECONDS` away, so a revocation need only be remembered that long.
- Topics are closed by default: a token names what its user may read in a claim (`topics`: exact names,
  `prefix.*` patterns, `*`); `TIDINGS_TOPICS_OPEN=true` or a rule of your own (`Hub(topic_access=...)`) opens them.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import HMACAlgorithm

from .clock import Clock, system_clock
from .config import Settings
from .errors import AuthError, ConfigError

PUBLISHER_ROLE = "publisher"
ADMIN_ROLE = "admin"
_HMAC_ALGS = frozenset({"HS256", "HS384", "HS512"})
MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second a datetime can hold
MAX_TOPIC_GRANTS = 1000
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class TopicGrants:
    """The topics a token lets its user read: exact names, `prefix.*` (any topic under `prefix.`), or `*` (all).
    Any other use of `*` grants nothing."""

    exact: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    every: bool = False

    @classmethod
    def parse(cls, value: Any) -> TopicGrants:
        """From a claim: a list of strings or one space-separated string; anything else grants nothing."""
        names = _strings(value)[:MAX_TOPIC_GRANTS]
        prefixes = tuple(
            dict.fromkeys(n[:-1] for n in names if n.endswith(".*") and "*" not in n[:-2] and n[:-2])
        )
        exact = frozenset(n for n in names if "*" not in n)
        return cls(exact, prefixes, "*" in names)

    def allows(self, topic: str) -> bool:
        return self.every or topic in self.exact or topic.startswith(self.prefixes)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a user from a JWT, or the server-side publisher."""

    user_id: str
    roles: frozenset[str] = frozenset()
    jti: str | None = None
    expires_at: float | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)
    issued_at: float | None = None  # `iat`: a revocation of the user refuses tokens issued at or before it
    topics: TopicGrants = TopicGrants()

    def has_role(self, role: str) -> bool:
        return role in self.roles


TopicAccessRule = Callable[[Principal, str], bool | Awaitable[bool]]


def allow_any_topic(principal: Principal, topic: str) -> bool:
    """The open rule (`TIDINGS_TOPICS_OPEN=true`): any authenticated principal may read any topic."""
    return True


def topic_granted(principal: Principal, topic: str) -> bool:
    """The default rule: a principal reads the topics its token's topics claim grants, and no other."""
    return principal.topics.allows(topic)


class JwksCache:
    """Keys from a JWKS URL, fetched lazily and refetched (at most every `min_refresh` s) on an unknown kid."""

    def __init__(
        self, url: str, *, ttl: float = 300, min_refresh: float = 30, client: httpx.AsyncClient | None = None
    ):
        self._url = url
        self._ttl = ttl
        self._min_refresh = min_refresh
        self._client = client
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")

    async def key(self, kid: str | None) -> jwt.PyJWK:
        now = time.monotonic()
        stale = now - self._fetched_at > self._ttl
        unknown = kid not in self._keys and now - self._fetched_at > self._min_refresh
        if stale or unknown:
            await self._refresh(now)
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        try:
            return self._keys[kid or ""]
        except KeyError:
            raise AuthError("token signed by an unknown key") from None

    async def _refresh(self, now: float) -> None:
        try:
            client = self._client or httpx.AsyncClient(timeout=5)
            try:
                response = await client.get(self._url)
                response.raise_for_status()
                jwks = jwt.PyJWKSet.from_dict(response.json())
            finally:
                if self._client is None:
                    await client.aclose()
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            if not self._keys:
                raise AuthError(f"cannot fetch signing keys: {exc}") from exc
            return  # keep serving the keys we have
        self._keys = {key.key_id or "": key for key in jwks.keys}
        self._fetched_at = now


class _PreparedHMAC(HMACAlgorithm):
    """HMAC with a key prepared once: PyJWT re-inspects a secret for PEM/JWK shapes on every decode (measured:
    a sixth of the CPU of opening a stream). The key is checked by the stock prepare_key at start-up instead."""

    def prepare_key(self, key: str | bytes) -> bytes:
        return key if isinstance(key, bytes) else key.encode()


def _jwt_api() -> jwt.PyJWT:
    api = jwt.PyJWT()
    jws = api._jws  # PyJWT offers no public way to register an algorithm on a PyJWT instance
    for name, digest in (("HS256", HMACAlgorithm.SHA256), ("HS384", HMACAlgorithm.SHA384),
                         ("HS512", HMACAlgorithm.SHA512)):  # fmt: skip
        jws.unregister_algorithm(name)
        jws.register_algorithm(name, _PreparedHMAC(digest))
    return api


class TokenVerifier:
    """Verifies JWTs per the settings and turns their claims into a Principal."""

    def __init__(
        self,
        settings: Settings,
        *,
        jwks_client: httpx.AsyncClient | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self._jwt = _jwt_api()
        self._clock = clock
        self._secret = (
            HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(settings.jwt_secret)
            if settings.jwt_secret
            else b""
        )
        self._public_key = _load_public_key(settings)
        self._jwks = JwksCache(settings.jwks_url, client=jwks_client) if settings.jwks_url else None
        self._algorithms = frozenset(settings.jwt_algorithms or self._default_algorithms())
        self._audience = settings.jwt_audience or None
        self._issuer = settings.jwt_issuer or None
        self._leeway = settings.jwt_leeway_seconds
        self._max_lifetime = settings.jwt_max_lifetime_seconds
        self._roles_path = settings.roles_claim.split(".")
        self._topics_path = settings.topics_claim.split(".")
        self._publish_key = settings.publish_key.encode()
        self._only_hmac = bool(self._secret) and self._algorithms <= _HMAC_ALGS

    def _default_algorithms(self) -> list[str]:
        algs = ["HS256"] if self._secret else []
        if isinstance(self._public_key, rsa.RSAPublicKey):
            algs.append("RS256")
        elif isinstance(self._public_key, ec.EllipticCurvePublicKey):
            algs.append("ES256")
        if self._jwks is not None:
            algs += ["RS256", "ES256"]
        return algs

    async def verify(self, token: str) -> Principal:
        """A Principal for a valid token, or AuthError saying why not."""
        if (
            self._only_hmac
        ):  # one key for every accepted algorithm: PyJWT checks `alg` against the list itself
            algorithms, key = list(self._algorithms), self._secret
            if token.count(".") != 2:
                raise AuthError("malformed token")
        else:
            alg, kid = self._header(token)
            algorithms, key = [alg], await self._key_for(alg, kid)
        try:
            claims = self._jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self._audience,
                issuer=self._issuer,
                options={
                    "require": ["sub", "exp"],
                    "verify_aud": self._audience is not None,
                    "verify_exp": False,  # times are checked below, against our clock and within range
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidAlgorithmError as exc:
            raise AuthError(f"token algorithm {self._alg_of(token)!r} is not accepted") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        except jwt.DecodeError as exc:
            raise AuthError(f"malformed token: {exc}") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        return self._principal(claims, self._check_times(claims))

    def _check_times(self, claims: Mapping[str, Any]) -> tuple[float, float | None]:
        """`exp` and `iat`, after refusing a token that is expired, not yet valid, or valid for too long."""
        now, leeway = self._clock(), self._leeway
        exp = _timestamp(claims, "exp")
        if exp is None:  # PyJWT requires it; checked again rather than assumed
            raise AuthError("token has no `exp`")
        if exp <= now - leeway:
            raise AuthError("token expired", "token_expired")
        if exp > now + self._max_lifetime + leeway:
            raise AuthError(
                f"token expires too late: at most {self._max_lifetime:g} s from now "
                "(TIDINGS_JWT_MAX_LIFETIME_SECONDS)"
            )
        nbf = _timestamp(claims, "nbf")
        if nbf is not None and nbf > now + leeway:
            raise AuthError("token is not yet valid (nbf)")
        iat = _timestamp(claims, "iat")
        if iat is not None and iat > now + leeway:
            raise AuthError("token is issued in the future (iat)")
        return exp, iat

    def _header(self, token: str) -> tuple[str, str | None]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError("malformed token") from exc
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise AuthError(f"token algorithm {alg!r} is not accepted")
        return alg, kid if isinstance(kid, str) else None

    @staticmethod
    def _alg_of(token: str) -> object:
        try:
            return jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError:
            return None

    async def _key_for(self, alg: str, kid: str | None) -> Any:
        if alg in _HMAC_ALGS:
            if not self._secret:
                raise AuthError("HMAC tokens are not accepted")
            return self._secret
        if self._public_key is not None:
            return self._public_key
        if self._jwks is not None:
            return (await self._jwks.key(kid)).key
        raise AuthError("no public key configured for this algorithm")

    def _principal(self, claims: Mapping[str, Any], times: tuple[float, float | None]) -> Principal:
        sub, jti = claims.get("sub"), claims.get("jti")
        if not isinstance(sub, str) or not 0 < len(sub) <= 256 or not _plain(sub):
            raise AuthError(
                "token `sub` must be a non-empty string of at most 256 characters, without control characters"
            )
        roles = frozenset(_strings(_claim(claims, self._roles_path)))
        if not all(_plain(role) for role in roles) or (isinstance(jti, str) and not _plain(jti)):
            raise AuthError("token roles and `jti` must not contain control characters")
        return Principal(
            user_id=sub,
            roles=roles,
            jti=jti if isinstance(jti, str) else None,
            expires_at=times[0],
            claims=claims,
            issued_at=times[1],
            topics=TopicGrants.parse(_claim(claims, self._topics_path)),
        )

    async def verify_publisher(self, credential: str) -> Principal:
        """The publish key, or a JWT that carries the publisher role."""
        if self._publish_key and hmac.compare_digest(credential.encode(), self._publish_key):
            return Principal(user_id="publisher", roles=frozenset({PUBLISHER_ROLE}))
        if credential.count(".") != 2:
            raise AuthError("invalid publish key")
        principal = await self.verify(credential)
        if not principal.has_role(PUBLISHER_ROLE):
            raise AuthError("token lacks the publisher role", "forbidden")
        return principal


def _claim(claims: Mapping[str, Any], path: Sequence[str]) -> Any:
    value: Any = claims
    for part in path:  # dotted paths reach nested claims, e.g. Keycloak's realm_access.roles
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _strings(value: Any) -> list[str]:
    """A claim holding names: a space-separated string or a list (its non-strings ignored)."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def _plain(text: str) -> bool:
    """No control characters (PostgreSQL refuses NUL; logs and terminals the rest) and no lone surrogates (they
    cannot be encoded for Redis or the database)."""
    return _UNSAFE.search(text) is None


def _timestamp(claims: Mapping[str, Any], name: str) -> float | None:
    """A time claim in epoch seconds, or None when absent; AuthError when it is not a plausible time."""
    if name not in claims:
        return None
    value = claims[name]
    # NaN fails both comparisons; a huge integer is compared exactly, never converted (it would overflow)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_TIMESTAMP:
        raise AuthError(f"token claim `{name}` must be a time in seconds between 0 and {MAX_TIMESTAMP}")
    return float(value)


def _load_public_key(settings: Settings) -> Any:
    if settings.jwt_public_key_path is None:
        return None
    try:
        return load_pem_public_key(settings.jwt_public_key_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"TIDINGS_JWT_PUBLIC_KEY_PATH: cannot load a PEM public key: {exc}") from exc


def bearer_token(authorization: str | None) -> str | None:
    """The credential of an `Authorization: Bearer <x>` header, or None."""
    if not authorization:
        return None
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()


def mint_token(
    secret: str,
    user_id: str,
    roles: Sequence[str] = (),
    *,
    ttl: float = 3600,
    now: float | None = None,
    claims: Mapping[str, Any] | None = None,
) -> str:
    """An HS256 development token (the CLI's `tidings token`)."""
    issued = time.time() if now is None else now
    payload = {
        "sub": user_id,
        "roles": list(roles),
        "iat": int(issued),
        "exp": int(issued + ttl),
        **(claims or {}),
    }
    return jwt.encode(payload, secret, algorithm="HS256")
