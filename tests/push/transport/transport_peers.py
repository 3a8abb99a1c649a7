"""Independent HTTP/2 servers for the transport's conformance tests, and the bookkeeping every scenario shares.

- hypercorn (PyPI, the `dev` extra), in this process, h2c by prior knowledge or TLS with ALPN;
- nghttpd (Debian's nghttp2-server, installed by scripts/peers.sh), a subprocess we can kill;
- H2Peer (h2peer.py), on the h2 library, where a scenario needs a server to misbehave precisely.

`burst` runs requests concurrently and returns, per request, its answer or error and how long it took; every
scenario asserts that each call ended within its deadline (`assert_within`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import signal
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tidings.push.transport import Response, Transport, TransportError

Require = Callable[[bool, str], None]
SLACK = 1.0  # a shared 2-core machine may run the loop late; a missed deadline is seconds, not this


@dataclass
class Outcome:
    ident: str
    answer: Response | TransportError
    elapsed: float

    @property
    def ok(self) -> bool:
        return isinstance(self.answer, Response)


async def burst(
    transport: Transport,
    origin: str,
    count: int,
    *,
    within: float,
    path: Callable[[int], bytes] = lambda i: b"/",
    body: Callable[[int], bytes] = lambda i: b"x",
    start: int = 0,
) -> list[Outcome]:
    """`count` concurrent requests, each tagged `x-id: <n>`; an outer bound keeps a broken transport from hanging."""
    loop = asyncio.get_running_loop()

    async def one(i: int) -> Outcome:
        began = loop.time()
        try:
            answer: Response | TransportError = await transport.request(
                origin, path(i), [(b"x-id", str(i).encode())], body(i), within=within
            )
        except TransportError as exc:
            answer = exc
        return Outcome(str(i), answer, loop.time() - began)

    async with asyncio.timeout(within * 3 + 10):
        return await asyncio.gather(*(one(i) for i in range(start, start + count)))


def assert_within(outcomes: list[Outcome], within: float) -> None:
    late = [o for o in outcomes if o.elapsed > within + SLACK]
    assert not late, f"{len(late)} calls outlived their {within} s deadline, e.g. {late[0]}"


def errors(outcomes: list[Outcome]) -> list[TransportError]:
    return [o.answer for o in outcomes if isinstance(o.answer, TransportError)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- TLS: a CA of our own and a certificate for 127.0.0.1 signed by it --------------------------------------
@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def make_certs(directory: Path) -> Certs:
    """A CA of our own and a certificate for 127.0.0.1 signed by it, as PEM files in `directory`."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tidings test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = Certs(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


# --- hypercorn, in this process ------------------------------------------------------------------------------
ASGIApp = Callable[
    [dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[..., Awaitable[None]]], Awaitable[None]
]


@contextlib.asynccontextmanager
async def hypercorn_server(app: ASGIApp, **config: Any) -> AsyncIterator[str]:
    """hypercorn serving `app` on a free port; yields its origin (https when certfile is given)."""
    import hypercorn.asyncio
    import hypercorn.config

    settings = hypercorn.config.Config()
    port = free_port()
    settings.bind = [f"127.0.0.1:{port}"]
    settings.accesslog = None
    settings.errorlog = None
    settings.graceful_timeout = 1.0
    for name, value in config.items():
        setattr(settings, name, value)
    stop = asyncio.Event()
    task = asyncio.create_task(hypercorn.asyncio.serve(app, settings, shutdown_trigger=stop.wait))
    scheme = "https" if settings.ssl_enabled else "http"
    try:
        await _until_listening(port, task)
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, 10)


async def _until_listening(port: int, task: asyncio.Task[Any] | None = None) -> None:
    async with asyncio.timeout(10):
        while True:
            if task is not None and task.done():
                task.result()  # raise what stopped it
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.02)  # polling a port that is not open yet, under the timeout above
                continue
            writer.close()
            return


# --- nghttpd, a subprocess -----------------------------------------------------------------------------------
class Nghttpd:
    """nghttpd on a port of its own, serving `htdocs`; `kill` and `start` again keep the port."""

    def __init__(self, htdocs: Path, *options: str, certs: Certs | None = None) -> None:
        self.htdocs = htdocs
        self.options = options
        self.certs = certs
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.certs else 'http'}://127.0.0.1:{self.port}"

    async def start(self) -> None:
        command = ["nghttpd", "-a", "127.0.0.1", "-d", str(self.htdocs), *self.options, str(self.port)]
        if self.certs is None:
            command.insert(1, "--no-tls")
        else:
            command += [str(self.certs.key), str(self.certs.cert)]
        self.process = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block; we wait for its port)
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        await _until_listening(self.port)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
