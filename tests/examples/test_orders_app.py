"""The example host app: its own POST /orders reaches the admin dashboard's stream through the mounted hub."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from examples.orders_app import create_app

from support import InProcessServer, open_stream
from tidings import Hub


async def test_creating_an_order_notifies_admins_within_500_ms(
    make_settings: Callable[..., Any], token: Callable[..., str]
) -> None:
    hub = Hub(make_settings())
    async with InProcessServer(create_app(hub, handle_signals=False)) as server:
        async with (
            open_stream(server.url, "/v1/admin/events", token=token("root", "admin")) as admin,
            open_stream(server.url, token=token("customer")) as customer,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            started = time.monotonic()
            response = await client.post("/orders", json={"item": "pizza", "quantity": 2})
            frame = await admin.next_event(timeout=0.5)
            assert time.monotonic() - started < 0.5
            assert response.status_code == 201
            assert frame.event == "order.created"
            assert frame.json()["data"] == {"order_id": response.json()["id"], "item": "pizza"}
            await customer.assert_silent(0.2)  # not an admin: nothing
            bad = await client.post("/orders", json={"item": "", "quantity": 0})
            assert bad.status_code == 422
