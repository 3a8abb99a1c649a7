"""Runs the JavaScript client's unit tests (`node --test clients/js/test/`) and fails when any of them fails.

Node ≥ 20 is needed (its test runner, web streams, structuredClone); without it the test skips locally and fails
under CI=true, like every other missing service.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from support import require

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "clients" / "js"
NODE_TIMEOUT = 300  # seconds; the suite runs on a virtual clock and takes a few seconds


def _node_major(node: str) -> int:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout
    match = re.match(r"v(\d+)\.", out.strip())
    return int(match.group(1)) if match else 0


def _count(name: str, output: str) -> int:
    match = re.search(rf"^# {name} (\d+)$", output, re.MULTILINE)
    return int(match.group(1)) if match else -1


def test_node_unit_tests_pass() -> None:
    node = shutil.which("node")
    require(node is not None and _node_major(node) >= 20, "node >= 20 (for the JavaScript client's tests)")
    assert node is not None
    files = sorted(str(p.relative_to(JS)) for p in (JS / "test").glob("*.test.js"))
    result = subprocess.run(
        [node, "--test", *files], cwd=JS, capture_output=True, text=True, timeout=NODE_TIMEOUT
    )
    output = result.stdout + result.stderr
    failed = [line for line in output.splitlines() if line.startswith("not ok")]
    assert result.returncode == 0 and not failed, (
        "node --test failed:\n" + "\n".join(failed) + "\n" + output[-4000:]
    )
    passed = _count("pass", output)
    assert passed >= 80, f"expected the whole suite to run, got {passed} passing tests:\n{output[-2000:]}"
    assert _count("fail", output) == 0


def test_browser_scripts_parse(tmp_path: Path) -> None:
    """dashboard.js imports a URL path and sw.js needs a worker scope, so the unit tests cannot load them: at
    least their syntax is checked (as an ES module and a classic script), so a typo cannot reach a browser."""
    node = shutil.which("node")
    require(node is not None, "node (for the JavaScript client's tests)")
    assert node is not None
    static = ROOT / "src" / "tidings" / "static" / "dashboard"
    scripts = {
        "dashboard.mjs": static / "dashboard.js",
        "format.mjs": static / "format.js",
        "tidings.mjs": JS / "tidings.js",
        "sw.cjs": JS / "sw.js",
    }
    for name, source in scripts.items():
        target = tmp_path / name
        target.write_text(source.read_text())
        result = subprocess.run([node, "--check", str(target)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{source}: {result.stderr}"
