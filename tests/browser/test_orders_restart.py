"""The delivery example's orders page survives a restart of the app (on Redis) without losing an order: orders
created while the page could not reach the app arrive as events when it reconnects (replayed from the hub's
history after its Last-Event-ID), not only through a refetch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import ServerProcess

from .harness import until

pytestmark = pytest.mark.asyncio(loop_scope="module")
STREAM = "**/api/admin/events"


async def test_the_orders_page_misses_no_order_across_a_restart(
    context: Any, redis_settings: dict[str, str], token: Callable[..., str], tmp_path: Path
) -> None:
    env = {
        "TIDINGS_ENV": "development",  # the page's token route; the test's secret signs every token
        "TIDINGS_BUS_URL": redis_settings["bus_url"],
        "TIDINGS_REDIS_PREFIX": redis_settings["redis_prefix"],
        "TIDINGS_RECONNECT_DELAY_MS": "300",
        "TIDINGS_SHUTDOWN_GRACE_SECONDS": "2",
        "TIDINGS_LOG_LEVEL": "warning",
        "DELIVERY_ORDERS_FILE": str(tmp_path / "orders.json"),
    }
    app = ["uvicorn", "--factory", "examples.delivery.app:create_app"]
    server = ServerProcess(env, tmp_path / "app", command=app, health="/hub/healthz").start()
    customer = {"Authorization": f"Bearer {token('cust')}"}

    async def order(item: str) -> int:
        async with httpx.AsyncClient(base_url=server.url, headers=customer) as http:
            response = await http.post("/orders", json={"store_id": "store-1", "item": item, "quantity": 1})
            assert response.status_code == 201, response.text
            order_id: int = response.json()["id"]
            return order_id

    try:
        page = await context.new_page()
        await page.goto(f"{server.url}/admin")
        await until(page, "document.querySelector('#state').textContent === 'open'")
        first = await order("soup")
        await until(page, f"document.querySelector(\"#orders tr[data-id='{first}']\") !== null")

        await context.route(STREAM, lambda route: route.abort())  # the page cannot get back in for now
        server.stop()
        await until(page, "document.querySelector('#state').textContent === 'waiting'")
        server = ServerProcess(
            env, tmp_path / "app", command=app, health="/hub/healthz", port=server.port
        ).start()
        missed = [await order("bread"), await order("tea")]  # while the page is away
        await context.unroute(STREAM)
        await page.evaluate("window.tidings.reconnect()")  # rather than waiting out its backoff

        await until(page, "document.querySelector('#state').textContent === 'open'")
        for order_id in missed:
            row = f"#orders tr[data-id='{order_id}']"
            await until(page, f'document.querySelector("{row}") !== null')
            assert await page.get_attribute(row, "class") == "fresh"  # from an event, replayed
        ids = await page.eval_on_selector_all("#orders tr", "rows => rows.map(r => Number(r.dataset.id))")
        assert ids == [*reversed(missed), first]
    finally:
        server.stop()
