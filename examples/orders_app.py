"""A host app with its own `POST /orders` that tells the admin dashboard about new orders through tidings.

Run it (development mode, generated secrets):

    .venv/bin/uvicorn --factory examples.orders_app:create_app --port 8000

then open the admin feed with `curl -N "http://127.0.0.1:8000/v1/admin/events?token=$(.venv/bin/tidings token
--user root --role admin)"` and create an order with `curl -X POST localhost:8000/orders -H 'Content-Type:
application/json' -d '{"item": "pizza", "quantity": 2}'`.
"""

from __future__ import annotations

import itertools

from fastapi import FastAPI
from pydantic import BaseModel, Field

from tidings import Hub
from tidings.api import mount


class OrderIn(BaseModel):
    item: str = Field(min_length=1, max_length=100)
    quantity: int = Field(ge=1, le=100)


class Order(OrderIn):
    id: int
    status: str = "new"


def create_app(hub: Hub | None = None, *, handle_signals: bool = True) -> FastAPI:
    hub = hub or Hub()
    app = FastAPI(title="orders (tidings example)")
    mount(app, hub, handle_signals=handle_signals)  # /v1/events, /v1/publish, ... and the hub's lifespan
    orders: dict[int, Order] = {}
    ids = itertools.count(1)

    @app.post("/orders", status_code=201)
    async def create_order(order_in: OrderIn) -> Order:
        order = Order(id=next(ids), **order_in.model_dump())
        orders[order.id] = order
        # The admin dashboard's feed; the payload carries ids and a summary, the dashboard fetches the rest.
        await hub.publish(
            "order.created", {"order_id": order.id, "item": order.item}, to={"roles": ["admin"]}
        )
        return order

    @app.get("/orders/{order_id}")
    async def get_order(order_id: int) -> Order:
        return orders[order_id]

    return app
