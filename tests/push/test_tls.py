"""APNs over TLS with ALPN h2, as against Apple: a self-signed certificate for 127.0.0.1 that the test trusts."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from push_helpers import DEVICE, KEY_ID, TEAM_ID, TOPIC, note

from tidings.push.apns import ApnsProvider
from tidings.push.base import Outcome, Target
from tidings.push.transport import Http2Unsupported, Transport
from tidings.sandbox.apns import ApnsSandbox


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


async def test_apns_over_tls_with_alpn_h2(
    certificate: tuple[Path, Path], apns_key: ec.EllipticCurvePrivateKey, apns_pem: bytes
) -> None:
    async with ApnsSandbox(
        key_id=KEY_ID,
        team_id=TEAM_ID,
        public_key=apns_key.public_key(),
        ssl_context=server_context(certificate),
    ) as sandbox:
        assert sandbox.url.startswith("https://")
        provider = ApnsProvider(
            key_pem=apns_pem,
            key_id=KEY_ID,
            team_id=TEAM_ID,
            topic=TOPIC,
            base_url=sandbox.url,
            clock=time.time,
            ssl_context=ssl.create_default_context(cafile=str(certificate[0])),
        )
        try:
            result = await provider.send(Target("d1", "apns", DEVICE), provider.prepare(note()))
        finally:
            await provider.aclose()
        assert result.outcome is Outcome.delivered
        assert sandbox.state.records[0]["payload"]["aps"] == {"content-available": 1}


async def test_untrusted_certificate_is_a_network_failure_not_a_crash(
    certificate: tuple[Path, Path], apns_key: ec.EllipticCurvePrivateKey, apns_pem: bytes
) -> None:
    async with ApnsSandbox(
        key_id=KEY_ID,
        team_id=TEAM_ID,
        public_key=apns_key.public_key(),
        ssl_context=server_context(certificate),
    ) as sandbox:
        provider = ApnsProvider(
            key_pem=apns_pem,
            key_id=KEY_ID,
            team_id=TEAM_ID,
            topic=TOPIC,
            base_url=sandbox.url,
            clock=time.time,
            timeout=2.0,
        )
        try:
            result = await provider.send(Target("d1", "apns", DEVICE), provider.prepare(note()))
        finally:
            await provider.aclose()
    assert result.outcome is Outcome.retry_later and "CERTIFICATE_VERIFY_FAILED" in result.reason


async def test_a_tls_server_without_h2_in_alpn_is_unsupported(certificate: tuple[Path, Path]) -> None:
    import asyncio

    context = server_context(certificate)
    context.set_alpn_protocols(["http/1.1"])
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    transport = Transport(
        timeout=2.0, http1=False, ssl_context=ssl.create_default_context(cafile=str(certificate[0]))
    )
    try:
        with pytest.raises(Http2Unsupported):
            await transport.request(f"https://127.0.0.1:{port}", b"/", [], b"")
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()
