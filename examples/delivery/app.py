"""The delivery seed app: customers order from stores, couriers claim and deliver, admins watch new orders live.

Its routes and payloads are the app's own (its mobile clients are in the field); tidings adds, in a few lines:
- `order.created` to role `admin`, streamed on the app's own `GET /api/admin/events` (admins only, one
  connection per admin, a keepalive every 30 s) — the admin "orders" page (`/admin`) is built on it;
- `order.claimed` / `order.status_changed` to the order's store and courier, with a silent push
  `{type, order_id}` to their phones;
- device registration on the app's own `POST /v1/devices/register` with `{platform, token}`.

Run it (development mode: the hub generates its secrets in .tidings/):

    .venv/bin/uvicorn --factory examples.delivery.app:create_app --port 8000

and open http://127.0.0.1:8000/admin. See examples/delivery/README.md for a walk through with curl.

(No `from __future__ import annotations` here: FastAPI must see the route signatures' `User` dependency, which
lives inside `create_app`, as an object rather than as a name to look up among the module's globals.)
"""

import json
import os
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from tidings import Hub, Principal
from tidings.api import mount, stream_route

from ..common import HUB_PREFIX, Page, current_user, dev_token, register_device

STATIC = Path(__file__).parent / "static"
ADMIN_STREAM = "/api/admin/events"
UserId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]
Status = Literal["new", "claimed", "preparing", "ready", "picked_up", "delivered", "cancelled"]


class OrderIn(BaseModel):
    store_id: UserId  # a store signs in as itself: its user id is the store id
    item: str = Field(min_length=1, max_length=100)
    quantity: int = Field(ge=1, le=100)


class Order(OrderIn):
    id: int
    customer_id: str
    courier_id: str | None = None
    status: Status = "new"


class StatusIn(BaseModel):
    status: Status


class DeviceIn(BaseModel):
    """The app's registration body, as its iOS and Android clients send it."""

    platform: Literal["ios", "android"]
    token: str = Field(min_length=1, max_length=4096)


class DeviceOut(BaseModel):
    id: str
    platform: str


class Orders:
    """The app's own state and rules: in memory, or in a JSON file (`path`) so that a restart keeps the orders
    and their ids (the admin page keys its rows by id)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.by_id: dict[int, Order] = {}
        if path is not None and path.exists():
            for raw in json.loads(path.read_text()):
                order = Order.model_validate(raw)
                self.by_id[order.id] = order

    def add(self, order_in: OrderIn, customer_id: str) -> Order:
        order = Order(id=max(self.by_id, default=0) + 1, customer_id=customer_id, **order_in.model_dump())
        self.by_id[order.id] = order
        self._save()
        return order

    def get(self, order_id: int, user: Principal | None = None) -> Order:
        """The order (404 if missing, or not the business of `user` when given)."""
        order = self.by_id.get(order_id)
        if order is None or (user is not None and not _involved(order, user) and not user.has_role("admin")):
            raise HTTPException(404, "no such order")
        return order

    def claim(self, order_id: int, courier: Principal) -> tuple[Order, bool]:
        """(the order, whether this call claimed it)."""
        if not courier.has_role("courier"):
            raise HTTPException(403, "only couriers claim orders")
        order = self.get(order_id)
        if order.courier_id == courier.user_id:
            return order, False  # claimed already by this courier
        if order.courier_id is not None or order.status != "new":
            raise HTTPException(409, "this order was claimed by another courier")
        order.courier_id, order.status = courier.user_id, "claimed"
        self._save()
        return order, True

    def set_status(self, order_id: int, status: Status, user: Principal) -> tuple[Order, bool]:
        """(the order, whether its status changed)."""
        order = self.get(order_id)
        if user.user_id not in (order.store_id, order.courier_id) and not user.has_role("admin"):
            raise HTTPException(403, "only the order's store, its courier or an admin change its status")
        changed = status != order.status
        if changed:
            order.status = status
            self._save()
        return order, changed

    def visible_to(self, user: Principal) -> list[Order]:
        """Admins see every order; others theirs, and couriers the unclaimed ones too."""
        orders = sorted(self.by_id.values(), key=lambda o: o.id, reverse=True)
        if not user.has_role("admin"):
            courier = user.has_role("courier")
            orders = [o for o in orders if _involved(o, user) or (courier and o.courier_id is None)]
        return orders[:100]

    def _save(self) -> None:
        if self.path is not None:
            self.path.write_text(json.dumps([o.model_dump() for o in self.by_id.values()]))


def _involved(order: Order, user: Principal) -> bool:
    return user.user_id in (order.customer_id, order.store_id, order.courier_id)


def create_app(
    hub: Hub | None = None, *, orders_file: Path | None = None, handle_signals: bool = True
) -> FastAPI:
    """The app; `uvicorn --factory` calls it without arguments (DELIVERY_ORDERS_FILE keeps orders on disk)."""
    hub = hub or Hub()
    app = FastAPI(title="delivery (a tidings example)")
    # --- tidings: the hub's API under /hub (client.js, dashboard), and the admins' stream at the app's path
    mount(app, hub, prefix=HUB_PREFIX, handle_signals=handle_signals)
    app.router.routes.append(stream_route(hub, ADMIN_STREAM, role="admin", limit=1, keepalive=30))
    app.include_router(order_routes(hub, Orders(orders_file or _env_path("DELIVERY_ORDERS_FILE"))))
    app.include_router(device_routes(hub))
    app.include_router(admin_page(hub))
    return app


def order_routes(hub: Hub, orders: Orders) -> APIRouter:
    router = APIRouter()
    User = Annotated[Principal, Depends(current_user(hub))]

    async def tell_store_and_courier(event_type: str, order: Order) -> None:
        # --- tidings: the store's and the courier's phones refetch the order (a silent push {type, order_id})
        to = [u for u in (order.store_id, order.courier_id) if u is not None]
        data = {"order_id": order.id, "status": order.status}
        push = {"mode": "silent", "data": {"order_id": order.id}}
        await hub.publish(event_type, data, to={"users": to}, push=push)

    @router.post("/orders", status_code=201)
    async def create_order(order_in: OrderIn, user: User) -> Order:
        order = orders.add(order_in, user.user_id)
        # --- tidings: the admin page shows the new order (the event carries what its row needs)
        row = {
            "order_id": order.id,
            "store_id": order.store_id,
            "item": order.item,
            "quantity": order.quantity,
        }
        await hub.publish("order.created", row, to={"roles": ["admin"]})
        return order

    @router.post("/orders/{order_id}/claim")
    async def claim_order(order_id: int, user: User) -> Order:
        order, claimed = orders.claim(order_id, user)
        if claimed:
            await tell_store_and_courier("order.claimed", order)
        return order

    @router.post("/orders/{order_id}/status")
    async def change_status(order_id: int, body: StatusIn, user: User) -> Order:
        order, changed = orders.set_status(order_id, body.status, user)
        if changed:
            await tell_store_and_courier("order.status_changed", order)
        return order

    @router.get("/orders")
    async def list_orders(user: User) -> list[Order]:
        return orders.visible_to(user)

    @router.get("/orders/{order_id}")
    async def get_order(order_id: int, user: User) -> Order:
        return orders.get(order_id, user)

    return router


def device_routes(hub: Hub) -> APIRouter:
    router = APIRouter()
    User = Annotated[Principal, Depends(current_user(hub))]

    @router.post("/v1/devices/register", status_code=201)
    async def register(body: DeviceIn, user: User, response: Response) -> DeviceOut:
        # --- tidings: the app's body, the hub's registry (ios -> APNs, android -> FCM); 200 when refreshed
        provider = "apns" if body.platform == "ios" else "fcm"
        device, created = await register_device(hub, user, {"provider": provider, **body.model_dump()})
        response.status_code = 201 if created else 200
        return DeviceOut(id=device.id, platform=device.platform)

    return router


def admin_page(hub: Hub) -> APIRouter:
    """The admin "orders" page (static/orders.html, built on tidings.js) and, in development, its token."""
    router = APIRouter(include_in_schema=False)
    page = Page(STATIC / "orders.html")

    @router.get("/admin", response_class=HTMLResponse)
    async def orders_page() -> HTMLResponse:
        return page.response()

    @router.post("/admin/token")
    async def admin_token() -> dict[str, str]:
        return dev_token(hub, "admin", ["admin"])

    return router


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None
