"""The tasks seed app: clients sync batches of operations; other devices of the same user learn that something
changed and refetch.

Its routes and payloads are the app's own (its iOS and macOS clients are in the field); tidings adds, in a few
lines:
- after `POST /tasks/sync`, if anything changed, `tasks.changed` with the hints
  `{todayCountChanged, changedScopes, updatedTaskIds}` to the user — on the app's own stream `GET /events` and as
  a silent push — debounced per user and scope: at most one stream nudge a second and one silent push a minute,
  the first at once, the rest merged (ids unioned, booleans OR-ed) and delivered when the window closes;
- device tokens on the app's own `POST /device-tokens` / `DELETE /device-tokens` with
  `{token, platform: ios|macos, environment: dev|prod}`.

Run it (development mode: the hub generates its secrets in .tidings/):

    .venv/bin/uvicorn --factory examples.tasks.app:create_app --port 8000

and open http://127.0.0.1:8000/ (a page that refetches at most once a second). See examples/tasks/README.md.

(No `from __future__ import annotations`: FastAPI must see the `User` dependency built inside the factory.)
"""

import itertools
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from tidings import Hub, Principal
from tidings.api import mount, stream_route

from ..common import HUB_PREFIX, Page, current_user, dev_token, register_device

STATIC = Path(__file__).parent / "static"
STREAM_WINDOW = 1.0  # the app's locked decisions: one stream nudge a second,
PUSH_WINDOW = 60.0  # one silent push a minute, per user and scope
MAX_HINT_IDS = 50  # hints, not the truth: a client refetches anyway; a silent push must stay small
ListId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class TaskIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    due: date | None = None
    list_id: ListId | None = None  # None: the inbox
    done: bool = False


class Task(TaskIn):
    id: str


class Create(BaseModel):
    op: Literal["create"]
    task: TaskIn


class Update(BaseModel):
    op: Literal["update"]
    id: str = Field(max_length=64)
    title: str | None = Field(None, min_length=1, max_length=200)
    due: date | None = None
    list_id: ListId | None = None
    done: bool | None = None


class Delete(BaseModel):
    op: Literal["delete"]
    id: str = Field(max_length=64)


Operation = Annotated[Create | Update | Delete, Field(discriminator="op")]


class SyncIn(BaseModel):
    operations: list[Operation] = Field(max_length=500)


class SyncOut(BaseModel):
    applied: int  # operations that changed something
    created: list[str]  # ids of created tasks, in the order of their operations
    todayCount: int  # the app's JSON names


class TasksOut(BaseModel):
    tasks: list[Task]
    todayCount: int


class DeviceTokenIn(BaseModel):
    """The app's device body, as its iOS and macOS clients send it."""

    token: str = Field(min_length=1, max_length=200)
    platform: Literal["ios", "macos"]
    environment: Literal["dev", "prod"]


class DeviceTokenDelete(BaseModel):
    token: str = Field(min_length=1, max_length=200)
    platform: Literal["ios", "macos"] | None = None
    environment: Literal["dev", "prod"] | None = None


Change = tuple[Task | None, Task | None]  # (before, after) of one task


class Tasks:
    """The app's own state: each user's tasks, in memory."""

    def __init__(self) -> None:
        self.by_user: dict[str, dict[str, Task]] = {}
        self._ids = itertools.count(1)

    def of(self, user_id: str) -> dict[str, Task]:
        return self.by_user.setdefault(user_id, {})

    def today_count(self, user_id: str, today: date) -> int:
        return sum(1 for t in self.of(user_id).values() if t.due == today and not t.done)

    def apply(self, user_id: str, op: Create | Update | Delete) -> Change | None:
        """Apply one operation; the task before and after it, or None when nothing changed."""
        tasks = self.of(user_id)
        if isinstance(op, Create):
            task = Task(id=f"t{next(self._ids)}", **op.task.model_dump())
            tasks[task.id] = task
            return None, task
        before = tasks.get(op.id)
        if before is None:
            return None  # unknown (deleted on another device meanwhile): nothing to do
        if isinstance(op, Delete):
            del tasks[op.id]
            return before, None
        given = op.model_dump(exclude={"op", "id"}, exclude_unset=True)
        # `due` and `list_id` may be cleared with null; a null title or done means "unchanged"
        updates = {k: v for k, v in given.items() if v is not None or k in ("due", "list_id")}
        after = before.model_copy(update=updates)
        if after == before:
            return None
        tasks[op.id] = after
        return before, after


def hints(changes: list[Change], today: date, count_before: int, count_after: int) -> dict[str, Any]:
    """What changed, for clients deciding what to refetch: {todayCountChanged, changedScopes, updatedTaskIds}."""
    scopes: set[str] = set()
    for task in (t for change in changes for t in change if t is not None):
        scopes.add(f"list:{task.list_id}" if task.list_id else "inbox")
        if task.due == today:
            scopes.add("today")
    ids = list(dict.fromkeys(t.id for change in changes for t in change if t is not None))
    return {
        "todayCountChanged": count_before != count_after,
        "changedScopes": sorted(scopes),
        "updatedTaskIds": ids[-MAX_HINT_IDS:],
    }


def create_app(
    hub: Hub | None = None,
    *,
    stream_window: float = STREAM_WINDOW,
    push_window: float = PUSH_WINDOW,
    handle_signals: bool = True,
) -> FastAPI:
    """The app; `uvicorn --factory` calls it without arguments. The windows are the app's (0 turns one off)."""
    hub = hub or Hub()
    app = FastAPI(title="tasks (a tidings example)")
    # --- tidings: the hub's API under /hub (client.js, dashboard), and the user's stream at the app's path
    mount(app, hub, prefix=HUB_PREFIX, handle_signals=handle_signals)
    app.router.routes.append(stream_route(hub, "/events"))
    app.include_router(task_routes(hub, Tasks(), {"stream": stream_window, "push": push_window}))
    app.include_router(device_routes(hub))
    app.include_router(page_routes(hub))
    return app


def task_routes(hub: Hub, tasks: Tasks, windows: dict[str, float]) -> APIRouter:
    router = APIRouter()
    User = Annotated[Principal, Depends(current_user(hub))]

    def today() -> date:
        return datetime.fromtimestamp(hub.clock(), UTC).date()  # the hub's clock: tests move it

    @router.post("/tasks/sync")
    async def sync(body: SyncIn, user: User) -> SyncOut:
        day = today()
        count_before = tasks.today_count(user.user_id, day)
        changes = [c for c in (tasks.apply(user.user_id, op) for op in body.operations) if c is not None]
        count_after = tasks.today_count(user.user_id, day)
        if changes:
            # --- tidings: tell the user's other devices, at most once a second (stream) / a minute (push)
            data = hints(changes, day, count_before, count_after)
            await hub.publish("tasks.changed", data, to={"users": [user.user_id]},
                              push={"mode": "silent", "data": data}, debounce=windows)  # fmt: skip
        created = [after.id for before, after in changes if before is None and after is not None]
        return SyncOut(applied=len(changes), created=created, todayCount=count_after)

    @router.get("/tasks")
    async def list_tasks(user: User) -> TasksOut:
        mine: Iterable[Task] = tasks.of(user.user_id).values()
        return TasksOut(tasks=list(mine), todayCount=tasks.today_count(user.user_id, today()))

    return router


def device_routes(hub: Hub) -> APIRouter:
    router = APIRouter()
    User = Annotated[Principal, Depends(current_user(hub))]

    @router.post("/device-tokens", status_code=201)
    async def add_token(body: DeviceTokenIn, user: User, response: Response) -> dict[str, str]:
        # --- tidings: the app's body, the hub's registry (APNs; dev builds use Apple's sandbox)
        environment = "sandbox" if body.environment == "dev" else "production"
        fields = {
            "provider": "apns",
            "platform": body.platform,
            "token": body.token,
            "environment": environment,
        }
        device, created = await register_device(hub, user, fields)
        response.status_code = 201 if created else 200
        return {"token": device.token, "platform": device.platform, "environment": body.environment}

    @router.delete("/device-tokens", status_code=204)
    async def remove_token(body: DeviceTokenDelete, user: User) -> Response:
        if not await hub.devices.remove(user.user_id, token=body.token):
            raise HTTPException(404, "no such device token")
        return Response(status_code=204)

    return router


def page_routes(hub: Hub) -> APIRouter:
    """The web page (static/tasks.html, built on tidings.js) and, in development, its token."""
    router = APIRouter(include_in_schema=False)
    page = Page(STATIC / "tasks.html")

    @router.get("/", response_class=HTMLResponse)
    async def tasks_page() -> HTMLResponse:
        return page.response()

    @router.post("/dev/token")
    async def token() -> dict[str, str]:
        return dev_token(hub, "demo", [])

    return router
