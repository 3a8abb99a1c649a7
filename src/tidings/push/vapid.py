"""RFC 8292 VAPID: the application server's P-256 key and the `Authorization: vapid t=..., k=...` header.

A signed JWT is cached per push-service origin and reused until an hour before it expires: signing costs
~40 us, and one origin (fcm.googleapis.com, updates.push.services.mozilla.com...) serves most subscriptions.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .ece import b64url_encode, public_bytes

MAX_LIFETIME = 24 * 3600  # RFC 8292 §2: exp no more than 24 hours ahead
LIFETIME = 12 * 3600
REUSE_MARGIN = 3600


@dataclass(frozen=True, slots=True)
class VapidKey:
    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> VapidKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_pem(cls, pem: bytes) -> VapidKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("a VAPID key must be a P-256 (prime256v1) EC private key")
        return cls(key)

    @classmethod
    def load(cls, path: Path) -> VapidKey:
        return cls.from_pem(path.read_bytes())

    def to_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def write(self, path: Path) -> None:
        """Write the private key readable by the owner only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(self.to_pem())

    @property
    def public_key(self) -> str:
        """The uncompressed point, base64url: what browsers take as `applicationServerKey`."""
        return b64url_encode(public_bytes(self.private_key.public_key()))


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class VapidSigner:
    """Makes Authorization headers for push endpoints, one signed JWT per origin reused for hours."""

    def __init__(
        self, key: VapidKey, subject: str, *, clock: Callable[[], float], lifetime: int = LIFETIME
    ) -> None:
        if not subject.startswith(("mailto:", "https:")):
            raise ValueError("the VAPID subject must be a mailto: or https: URL")
        self.key = key
        self.subject = subject
        self.clock = clock
        self.lifetime = min(lifetime, MAX_LIFETIME)
        self.signed = 0  # JWTs signed so far (tests count them)
        self._k = key.public_key
        self._cache: dict[str, tuple[float, str]] = {}

    def authorization(self, endpoint: str) -> str:
        return self.for_origin(origin_of(endpoint))

    def for_origin(self, origin: str) -> str:
        now = self.clock()
        cached = self._cache.get(origin)
        if cached is not None and now < cached[0] - REUSE_MARGIN:
            return cached[1]
        exp = int(now) + self.lifetime
        token = jwt.encode({"aud": origin, "exp": exp, "sub": self.subject}, self.key.private_key, "ES256")
        header = f"vapid t={token}, k={self._k}"
        self.signed += 1
        if len(self._cache) > 1024:  # endpoints come from browsers; never grow without bound
            self._cache.clear()
        self._cache[origin] = (exp, header)
        return header
