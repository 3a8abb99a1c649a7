"""Debian's chromium, driven by Playwright over CDP: one browser per test module, a fresh context per test.

Every module here says `pytestmark = pytest.mark.asyncio(loop_scope="module")`: its tests share the loop that the
module's browser lives in.

Playwright never downloads a browser here (`playwright install` is never run): it launches /usr/bin/chromium,
which `scripts/browser.sh` installs with apt. Without it (or without the playwright package) these tests skip
locally and fail under CI=true. Each launch gets a fresh temporary profile (Playwright's own `--user-data-dir`).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from support import require

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",  # root in a container: chromium's sandbox needs user namespaces it may not have
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-renderer-backgrounding",  # seven tabs: the ones not in front must not be throttled
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.browser)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        require(False, "the playwright package (pip install -e '.[dev]')")
    require(shutil.which("chromium") is not None, "Debian's chromium (scripts/browser.sh installs it)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="module")
async def context(browser: Any) -> AsyncIterator[Any]:
    ctx = await browser.new_context()
    ctx.set_default_timeout(30_000)
    try:
        yield ctx
    finally:
        await ctx.close()
