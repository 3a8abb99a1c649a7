"""The messenger seed app: conversations between users, with pushes that respect who is online, what is muted and
when people sleep.

Its routes and payloads are the app's own (its clients are in the field); tidings adds, in a few lines:
- `message.new` to the conversation's participants except the sender — streamed to those online (the app's own
  `GET /api/v1/messenger/events`), an alert push only to those offline (`"when": "offline"`, decided when the
  push is delivered), never into a muted conversation (scope `conversation:<id>`, muted through the app's own
  route, optionally for some hours), and held during the recipient's quiet hours (released, one per
  conversation, when they end);
- devices on the app's own routes: `POST /api/v1/messenger/devices/register` with
  `{device_token, platform, provider: fcm|apns|web_push, device_name}` (a Web Push `device_token` is the JSON
  text of the browser's subscription), `DELETE /api/v1/messenger/devices/{device_token}`,
  `GET /api/v1/messenger/devices`.

Run it (development mode: the hub generates its secrets in .tidings/):

    .venv/bin/uvicorn --factory examples.messenger.app:create_app --port 8000

See examples/messenger/README.md. A minimal web client is served at `/?user=<name>` (`static/messenger.html`): the
conversations, and the user's inbox with unread dots (the hub's `/hub/v1/inbox`, kept in step on every tab by the
stream's `inbox.changed`).

(No `from __future__ import annotations`: FastAPI must see the `User` dependency built inside the factory.)
"""

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from tidings import Hub, Principal
from tidings.api import mount, stream_route
from tidings.registry.store import Device

from ..common import HUB_PREFIX, Page, current_user, dev_token, register_device

API = "/api/v1/messenger"
STATIC = Path(__file__).parent / "static"
PREVIEW_CHARS = 140
UserId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]


class ConversationIn(BaseModel):
    title: str | None = Field(None, max_length=100)
    participants: list[UserId] = Field(min_length=1, max_length=100)  # besides the creator


class Conversation(BaseModel):
    id: int
    title: str | None
    participants: list[str]


class MessageIn(BaseModel):
    text: str = Field(min_length=1, max_length=4000)


class Message(BaseModel):
    id: int
    conversation_id: int
    sender_id: str
    text: str
    sent_at: datetime


class MuteIn(BaseModel):
    hours: float | None = Field(None, gt=0, le=24 * 365)  # None: until unmuted


class QuietHoursIn(BaseModel):
    start: str = Field(pattern=r"^\d{2}:\d{2}$")
    end: str = Field(pattern=r"^\d{2}:\d{2}$")
    timezone: str | None = Field(None, max_length=64)  # default: the zone of the user's latest device


class DeviceRegister(BaseModel):
    """The app's registration body, as its iOS, Android and web clients send it."""

    device_token: str = Field(min_length=1, max_length=8192)
    platform: Literal["ios", "android", "web", "macos"]
    provider: Literal["fcm", "apns", "web_push"]
    device_name: str | None = Field(None, max_length=128)


class DeviceOut(BaseModel):
    device_token: str  # a Web Push device is listed by its subscription's endpoint (its keys are not echoed)
    platform: str
    provider: str
    device_name: str | None
    registered_at: datetime
    last_seen_at: datetime

    @classmethod
    def of(cls, device: Device) -> "DeviceOut":
        provider = "web_push" if device.provider == "webpush" else device.provider
        return cls(device_token=device.token, platform=device.platform, provider=provider,
                   device_name=device.name, registered_at=device.created_at,
                   last_seen_at=device.last_seen_at)  # fmt: skip


class Conversations:
    """The app's own state, in memory: conversations and their messages."""

    def __init__(self) -> None:
        self.by_id: dict[int, Conversation] = {}
        self.messages: dict[int, list[Message]] = {}
        self._conversation_ids = itertools.count(1)
        self._message_ids = itertools.count(1)

    def start(self, body: ConversationIn, creator: str) -> Conversation:
        participants = list(dict.fromkeys([creator, *body.participants]))
        conversation = Conversation(
            id=next(self._conversation_ids), title=body.title, participants=participants
        )
        self.by_id[conversation.id] = conversation
        self.messages[conversation.id] = []
        return conversation

    def of(self, conversation_id: int, user: Principal) -> Conversation:
        """The conversation, if `user` takes part in it (404 otherwise, as if it did not exist)."""
        conversation = self.by_id.get(conversation_id)
        if conversation is None or user.user_id not in conversation.participants:
            raise HTTPException(404, "no such conversation")
        return conversation

    def post(self, conversation: Conversation, sender: str, text: str, at: datetime) -> Message:
        message = Message(id=next(self._message_ids), conversation_id=conversation.id, sender_id=sender,
                          text=text, sent_at=at)  # fmt: skip
        self.messages[conversation.id].append(message)
        return message


def scope_of(conversation_id: int) -> str:
    """What a user mutes a conversation by (the events' `scope`)."""
    return f"conversation:{conversation_id}"


def create_app(hub: Hub | None = None, *, handle_signals: bool = True) -> FastAPI:
    """The app; `uvicorn --factory` calls it without arguments."""
    hub = hub or Hub()
    app = FastAPI(title="messenger (a tidings example)")
    # --- tidings: the hub's API under /hub (client.js, dashboard), and the users' stream at the app's path
    mount(app, hub, prefix=HUB_PREFIX, handle_signals=handle_signals)
    app.router.routes.append(stream_route(hub, f"{API}/events"))
    app.include_router(conversation_routes(hub, Conversations()), prefix=API)
    app.include_router(setting_routes(hub), prefix=API)
    app.include_router(device_routes(hub), prefix=API)
    app.include_router(page_routes(hub))
    return app


def conversation_routes(hub: Hub, conversations: Conversations) -> APIRouter:
    router = APIRouter()
    User = Annotated[Principal, Depends(current_user(hub))]

    @router.post("/conversations", status_code=201)
    async def start_conversation(body: ConversationIn, user: User) -> Conversation:
        return conversations.start(body, user.user_id)

    @router.get("/conversations")
    async def list_conversations(user: User) -> list[Conversation]:
        return [c for c in conversations.by_id.values() if user.user_id in c.participants]

    @router.post("/conversations/{conversation_id}/messages", status_code=201)
    async def send_message(conversation_id: int, body: MessageIn, user: User) -> Message:
        conversation = conversations.of(conversation_id, user)
        message = conversations.post(
            conversation, user.user_id, body.text, datetime.fromtimestamp(hub.clock(), UTC)
        )
        recipients = [p for p in conversation.participants if p != user.user_id]
        if recipients:
            await tell_participants(hub, conversation, message, recipients)
        return message

    @router.get("/conversations/{conversation_id}/messages")
    async def list_messages(conversation_id: int, user: User) -> list[Message]:
        return conversations.messages[conversations.of(conversation_id, user).id][-100:]

    @router.put("/conversations/{conversation_id}/mute")
    async def mute(conversation_id: int, body: MuteIn, user: User) -> dict[str, Any]:
        conversations.of(conversation_id, user)
        until = None
        if body.hours is not None:
            until = datetime.fromtimestamp(hub.clock(), UTC) + timedelta(hours=body.hours)
        # --- tidings: a muted scope gets neither stream events nor pushes (until `muted_until`, if given)
        scope = {"muted": True, "muted_until": until.isoformat() if until else None}
        await hub.preferences.patch(user.user_id, {"scopes": {scope_of(conversation_id): scope}})
        return {"conversation_id": conversation_id, "muted": True, "muted_until": until}

    @router.delete("/conversations/{conversation_id}/mute", status_code=204)
    async def unmute(conversation_id: int, user: User) -> Response:
        conversations.of(conversation_id, user)
        await hub.preferences.delete_scope(user.user_id, scope_of(conversation_id))
        return Response(status_code=204)

    return router


async def tell_participants(hub: Hub, conversation: Conversation, message: Message, to: list[str]) -> None:
    # --- tidings: online participants see it on their stream; offline ones get an alert push, unless they
    # muted the conversation; during their quiet hours the push waits for the morning (one per conversation)
    preview = message.text[:PREVIEW_CHARS]
    data = {"conversation_id": conversation.id, "message_id": message.id, "sender_id": message.sender_id,
            "preview": preview}  # fmt: skip
    push = {
        "mode": "alert",
        "title": conversation.title or message.sender_id,
        "body": preview,
        "thread_id": scope_of(conversation.id),  # the phone groups a conversation's notifications
        "when": "offline",
        "data": {"conversation_id": conversation.id, "message_id": message.id},
    }
    # --- tidings: and each recipient's inbox keeps it (read state, unread counts live on every tab and badge)
    inbox = {"title": push["title"], "body": preview, "url": f"/?c={conversation.id}", "category": "messages",
             "data": {"conversation_id": conversation.id}}  # fmt: skip
    await hub.publish(
        "message.new", data, to={"users": to}, push=push, scope=scope_of(conversation.id), inbox=inbox
    )


def setting_routes(hub: Hub) -> APIRouter:
    router = APIRouter()
    User = Annotated[Principal, Depends(current_user(hub))]

    @router.put("/quiet-hours")
    async def set_quiet_hours(body: QuietHoursIn, user: User) -> dict[str, Any]:
        # --- tidings: alerts are held during these hours and released, coalesced, when they end
        prefs = await hub.preferences.patch(user.user_id, {"quiet_hours": body.model_dump(exclude_none=True)})
        return dict(prefs.document()["quiet_hours"])

    @router.delete("/quiet-hours", status_code=204)
    async def clear_quiet_hours(user: User) -> Response:
        await hub.preferences.patch(user.user_id, {"quiet_hours": None})
        return Response(status_code=204)

    return router


def device_routes(hub: Hub) -> APIRouter:
    router = APIRouter()
    User = Annotated[Principal, Depends(current_user(hub))]
    renamed = {"token": "device_token", "subscription": "device_token", "name": "device_name"}

    @router.post("/devices/register", status_code=201)
    async def register(body: DeviceRegister, user: User, response: Response) -> DeviceOut:
        # --- tidings: the app's body, the hub's registry; a browser's subscription arrives as JSON text
        fields: dict[str, Any] = {"platform": body.platform, "name": body.device_name}
        if body.provider == "web_push":
            fields |= {"provider": "webpush", "subscription": _subscription(body.device_token)}
        else:
            fields |= {"provider": body.provider, "token": body.device_token}
        device, created = await register_device(hub, user, fields, renamed=renamed)
        response.status_code = 201 if created else 200
        return DeviceOut.of(device)

    @router.get("/devices")
    async def list_devices(user: User) -> list[DeviceOut]:
        return [DeviceOut.of(d) for d in await hub.devices.list_for_user(user.user_id)]

    @router.delete("/devices/{device_token:path}", status_code=204)
    async def remove(device_token: str, user: User) -> Response:
        token = device_token
        if token.startswith("{"):  # a Web Push subscription, as registered: its endpoint is the token
            token = str(_subscription(token).get("endpoint", ""))
        if not token or not await hub.devices.remove(user.user_id, token=token):
            raise HTTPException(404, "no such device")
        return Response(status_code=204)

    return router


def _subscription(text: str) -> dict[str, Any]:
    """The browser's `PushSubscription.toJSON()`, sent as JSON text in `device_token`."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        error = {"loc": ("body", "device_token"), "msg": "a web_push device_token is the subscription's JSON text",
                 "type": "value_error"}  # fmt: skip
        raise RequestValidationError([error])
    return value


def page_routes(hub: Hub) -> APIRouter:
    """A minimal web client (static/messenger.html, built on tidings.js) and, in development, its token."""
    router = APIRouter(include_in_schema=False)
    page = Page(STATIC / "messenger.html")

    @router.get("/", response_class=HTMLResponse)
    async def messenger_page() -> HTMLResponse:
        return page.response()

    @router.post("/dev/token")
    async def token(
        user: Annotated[str, Query(max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")],
    ) -> dict[str, str]:
        return dev_token(hub, user, [])

    return router
