"""The tasks example's page in Chromium: a burst of syncs nudges it twenty times, and it refetches the list at most
once a second (tidings.js `debounce`) — the last refetch after the burst, so it ends showing the latest state."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from examples.tasks.app import create_app

from support import PLAIN_PROTOCOL, InProcessServer
from tidings import Hub, Settings

from .harness import until

pytestmark = pytest.mark.asyncio(loop_scope="module")
SYNCS = 20


async def test_the_tasks_page_refetches_at_most_once_a_second(
    context: Any, make_settings: Callable[..., Settings], token: Callable[..., str]
) -> None:
    hub = Hub(make_settings(env="development"))
    # the server-side window off: every sync is a nudge of its own, so only the page limits its refetches
    app = create_app(hub, stream_window=0, handle_signals=False)
    async with InProcessServer(app, http=PLAIN_PROTOCOL) as server:
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        await page.goto(f"{server.url}/")
        await until(page, "document.querySelector('#state').textContent === 'open'")
        await until(page, "document.querySelector('#today-count').textContent === '0'")

        day = datetime.now(UTC).date().isoformat()
        demo = {"Authorization": f"Bearer {token('demo')}"}  # the page's user, syncing from another device
        async with httpx.AsyncClient(base_url=server.url, headers=demo) as http:
            started = time.time() * 1000
            for n in range(SYNCS):
                operations = [{"op": "create", "task": {"title": f"task {n}", "due": day}}]
                assert (await http.post("/tasks/sync", json={"operations": operations})).status_code == 200
                await asyncio.sleep(0.05)  # pacing the burst over about a second and a half
            ended = time.time() * 1000
        await until(page, f"window.tasksPage.nudges === {SYNCS}")
        await until(
            page, f"document.querySelector('#today-count').textContent === '{SYNCS}'"
        )  # the last refetch
        assert await page.eval_on_selector_all("#tasks li", "items => items.length") == SYNCS

        fetches: list[float] = await page.evaluate("window.tasksPage.fetches")
        gaps = [later - earlier for earlier, later in itertools.pairwise(fetches)]
        assert all(gap >= 995 for gap in gaps), gaps  # at most once a second
        during = [at for at in fetches if at >= started]
        assert 1 <= len(during) <= (ended - started) / 1000 + 2, (during, started, ended)
        assert len(fetches) < SYNCS
        assert not errors, errors
