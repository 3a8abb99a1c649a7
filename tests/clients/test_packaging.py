"""One copy of the browser client: the package holds it (and ships it: package-data), clients/js links to it."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "src" / "tidings" / "static"


def test_clients_js_links_to_the_files_the_package_serves() -> None:
    for name in ("tidings.js", "tidings.d.ts", "sw.js"):
        link = ROOT / "clients" / "js" / name
        assert link.is_symlink(), f"{link} must be a link to the package's copy, not a second copy"
        assert link.resolve() == (STATIC / "client" / name).resolve()


def test_the_static_files_are_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "static/**/*" in config["tool"]["setuptools"]["package-data"]["tidings"]
    assert (STATIC / "dashboard" / "index.html").is_file() and (STATIC / "client" / "sw.js").is_file()
