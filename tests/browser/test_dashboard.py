"""The dashboard in Chromium: one-click development login, counters and the live feed moving as events are
published — standalone and mounted under a prefix in a host app — and the delivery example's live orders page."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from examples.delivery.app import create_app as delivery_app
from fastapi import FastAPI

from support import PLAIN_PROTOCOL, InProcessServer, app_of
from tidings import Hub, Settings
from tidings.api import mount

from .harness import until
from .test_streams import PUBLISHER

pytestmark = pytest.mark.asyncio(loop_scope="module")


def hosted(hub: Hub, prefix: str) -> Any:
    if not prefix:
        return app_of(hub)
    app = FastAPI(title="a host app")
    mount(app, hub, prefix=prefix, handle_signals=False)
    return app


@pytest.mark.parametrize("prefix", ["", "/hub"], ids=["standalone", "under-a-prefix"])
async def test_the_counters_and_the_feed_move_when_events_are_published(
    context: Any, make_settings: Callable[..., Settings], prefix: str
) -> None:
    hub = Hub(make_settings(env="development", dashboard_stats_seconds=0.5))
    async with InProcessServer(hosted(hub, prefix), http=PLAIN_PROTOCOL) as server:
        base = server.url + prefix
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        await page.goto(f"{base}/dashboard")
        assert page.url == f"{base}/dashboard/"
        await page.click("#dev-login")  # shown only in development mode, from a loopback address
        await until(page, "document.querySelector('#stream-state').textContent === 'open'")
        await until(page, "document.querySelector('#c-connections').textContent !== '\\u2013'")
        assert "dev-admin" in await page.text_content("#who")
        # the dashboard's own feed: the first counters (GET /v1/admin/stats) may predate it, the feed's frames not
        await until(page, "document.querySelector('#c-connections-roles').textContent === 'admin 1'")

        # counters are totals of this (test) process: compare with what the page showed before
        await until(page, "/^\\d+ published/.test(document.querySelector('#c-published').textContent)")
        before = int((await page.text_content("#c-published") or "").split()[0])
        async with httpx.AsyncClient(base_url=base, headers=PUBLISHER) as http:
            body = [{"type": "order.created", "data": {"n": i}, "to": {"users": [f"u{i}"]}} for i in range(3)]
            assert (await http.post("/v1/publish", json=body)).status_code == 202
        await until(page, "document.querySelectorAll('#feed li').length === 3")
        assert (await page.text_content("#feed li .type")) == "order.created"
        await until(
            page,
            f"document.querySelector('#c-published').textContent.startsWith('{before + 3} published')",
            timeout=15,
        )

        # the test form publishes as the admin; its event shows up in the feed too
        await page.fill("input[name=type]", "dashboard.ping")
        await page.fill("input[name=users]", "alice")
        await page.click("#publish-form button[type=submit]")
        await until(page, "document.querySelector('#publish-result').textContent.startsWith('Published')")
        await until(page, "document.querySelectorAll('#feed li').length === 4")
        assert (await page.text_content("#feed li .type")) == "dashboard.ping"

        async with httpx.AsyncClient(base_url=base, headers=PUBLISHER) as http:
            memo = {"type": "notes.posted", "to": {"roles": ["admin"]}, "inbox": {"title": "For admins"}}
            assert (await http.post("/v1/publish", json=memo)).status_code == 202
        await page.fill("#lookup-user", "dev-admin")  # the user lookup: presence of this very dashboard
        await page.fill("#lookup-roles", "admin")  # and its inbox as a token with the role admin reads it
        await page.click("#lookup-form button[type=submit]")
        await until(page, "document.querySelector('#lookup-presence').textContent.includes('online')")
        await until(page, "document.querySelector('#lookup-inbox').textContent.includes('For admins')")
        assert (await page.text_content("#lookup-inbox-counts") or "").startswith("1 unread")
        assert not errors, errors


async def test_the_orders_page_shows_a_new_order_within_500_ms(
    context: Any, make_settings: Callable[..., Settings], token: Callable[..., str]
) -> None:
    hub = Hub(make_settings(env="development"))
    async with InProcessServer(delivery_app(hub, handle_signals=False), http=PLAIN_PROTOCOL) as server:
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)  # CSP refusals too
        page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        await page.goto(f"{server.url}/admin")
        await until(page, "document.querySelector('#state').textContent === 'open'")
        await page.evaluate(
            """() => new MutationObserver(() => { window.shownAt ??= Date.now(); })
                 .observe(document.querySelector('#orders'), {childList: true})"""
        )
        customer = {"Authorization": f"Bearer {token('cust')}"}
        async with httpx.AsyncClient(base_url=server.url, headers=customer) as http:
            created_at = time.time() * 1000
            body = {"store_id": "store-1", "item": "pizza", "quantity": 2}
            order = (await http.post("/orders", json=body)).json()
        await until(page, "window.shownAt !== undefined")
        assert await page.evaluate("window.shownAt") - created_at < 500
        row = await page.text_content(f"#orders tr[data-id='{order['id']}']")
        assert row is not None and "pizza" in row and "store-1" in row
        await until(
            page,  # the debounced refetch (the app's GET /orders with the admin's token) agrees
            "window.performance.getEntriesByType('resource').filter(e => e.name.endsWith('/orders')).length >= 2",
        )
        cells = await page.eval_on_selector_all(
            f"#orders tr[data-id='{order['id']}'] td", "tds => tds.map(td => td.textContent)"
        )
        assert cells == [f"#{order['id']}", "store-1", "pizza", "2", "new"]
        assert not errors, errors
