"""A host app with its own `POST /orders` that tells the admin page about new orders through tidings.

Run it (development mode, generated secrets):

    .venv/bin/uvicorn --factory examples.orders_app:create_app --port 8000

then open http://127.0.0.1:8000/admin (the live order list, `examples/static/orders.html`) and create an order
with `curl -X POST localhost:8000/orders -H 'Content-Type: application/json' -d '{"item": "pizza", "quantity":
2}'`. The admin feed is also readable with `curl -N "http://127.0.0.1:8000/v1/admin/events?token=$(.venv/bin/tidings
token --user root --role admin)"`.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from tidings import Hub
from tidings.api import mount
from tidings.auth import mint_token

PAGE = Path(__file__).parent / "static" / "orders.html"
ADMIN_TOKEN_SECONDS = 600


class OrderIn(BaseModel):
    item: str = Field(min_length=1, max_length=100)
    quantity: int = Field(ge=1, le=100)


class Order(OrderIn):
    id: int
    status: str = "new"


def page_csp(html: str) -> str:
    """A strict policy that still lets the page's own inline script and style run (by their hashes)."""

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}[^>]*>(.*?)</{tag}>", html, re.DOTALL)
        digests = (base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() for b in blocks)
        return " ".join(f"'sha256-{d}'" for d in digests)

    return (
        f"default-src 'self'; script-src 'self' {hashes('script')}; style-src 'self' {hashes('style')}; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


def create_app(hub: Hub | None = None, *, handle_signals: bool = True) -> FastAPI:
    hub = hub or Hub()
    app = FastAPI(title="orders (tidings example)")
    mount(app, hub, handle_signals=handle_signals)  # /v1/events, /v1/client.js, ... and the hub's lifespan
    orders: dict[int, Order] = {}
    ids = itertools.count(1)
    html = PAGE.read_text()
    csp = page_csp(html)

    @app.post("/orders", status_code=201)
    async def create_order(order_in: OrderIn) -> Order:
        order = Order(id=next(ids), **order_in.model_dump())
        orders[order.id] = order
        # The admin page's feed; the payload carries ids and a summary, the page fetches the rest.
        await hub.publish(
            "order.created", {"order_id": order.id, "item": order.item}, to={"roles": ["admin"]}
        )
        return order

    @app.get("/orders")
    async def list_orders() -> list[Order]:
        return sorted(orders.values(), key=lambda o: o.id, reverse=True)[:100]

    @app.get("/orders/{order_id}")
    async def get_order(order_id: int) -> Order:
        return orders[order_id]

    @app.get("/admin", response_class=HTMLResponse)
    async def admin_page() -> HTMLResponse:
        return HTMLResponse(html, headers={"Content-Security-Policy": csp, "Cache-Control": "no-cache"})

    @app.post("/admin/token")
    async def admin_token() -> dict[str, str]:
        # A real app checks its own session here (is this the signed-in admin?) before minting; the example
        # trusts everyone, which is why it only runs in development mode.
        secret = hub.settings.jwt_secret
        if not hub.settings.is_development or not secret:
            raise HTTPException(404, "the example's token route exists in development mode only")
        return {"token": mint_token(secret, "admin", ["admin"], ttl=ADMIN_TOKEN_SECONDS)}

    return app
