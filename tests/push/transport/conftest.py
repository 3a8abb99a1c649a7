"""Fixtures of the transport's conformance tests: the peers (transport_peers.py) and `require`."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from transport_peers import Certs, Nghttpd, Require, hypercorn_server, make_certs


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def require(request: pytest.FixtureRequest) -> Require:
    """tests/conftest.py's `require` (skip locally, fail under CI=true), found among pytest's plugins: both
    conftest files are top-level modules named `conftest`, so it cannot be imported by name from here."""
    root = Path(__file__).resolve().parents[2] / "conftest.py"
    for plugin in request.config.pluginmanager.get_plugins():
        if Path(getattr(plugin, "__file__", None) or "/").resolve() == root:
            return plugin.require  # type: ignore[no-any-return]
    raise RuntimeError("tests/conftest.py is not loaded")


@pytest.fixture
def nghttpd(tmp_path: Path, require: Require) -> Iterator[Callable[..., Nghttpd]]:
    require(shutil.which("nghttpd") is not None, "nghttpd (Debian package nghttp2-server; scripts/peers.sh)")
    htdocs = tmp_path / "htdocs"
    htdocs.mkdir()
    (htdocs / "index.html").write_bytes(b"hello from nghttpd\n" * 10)
    started: list[Nghttpd] = []

    def make(*options: str, certs: Certs | None = None) -> Nghttpd:
        server = Nghttpd(htdocs, *options, certs=certs)
        started.append(server)
        return server

    yield make
    for server in started:
        server.kill()


@pytest.fixture
def hypercorn(require: Require) -> Callable[..., contextlib.AbstractAsyncContextManager[str]]:
    """`async with hypercorn(app, **config) as origin:`; hypercorn must be installed (the dev extra)."""
    try:
        import hypercorn.asyncio  # noqa: F401
    except ImportError:
        require(False, "hypercorn (the dev extra)")
    return hypercorn_server
