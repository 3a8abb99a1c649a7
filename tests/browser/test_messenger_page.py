"""The messenger example's minimal web client in Chromium: a message sent to the open conversation appears on
the page by itself (the app's own stream), one the page sends is shown too, and while the page is open its user
counts as online, so the message makes no push for them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from examples.messenger.app import create_app

from support import PLAIN_PROTOCOL, InProcessServer
from tidings import Hub, Settings

from .harness import until

pytestmark = pytest.mark.asyncio(loop_scope="module")
API = "/api/v1/messenger"


async def test_a_message_appears_on_the_open_conversation(
    context: Any, make_settings: Callable[..., Settings], token: Callable[..., str]
) -> None:
    hub = Hub(make_settings(env="development"))
    async with InProcessServer(create_app(hub, handle_signals=False), http=PLAIN_PROTOCOL) as server:
        sam = {"Authorization": f"Bearer {token('sam')}"}
        async with httpx.AsyncClient(base_url=server.url, headers=sam) as http:
            body = {"title": "Lunch", "participants": ["ann"]}
            chat = (await http.post(f"{API}/conversations", json=body)).json()["id"]

            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            await page.goto(f"{server.url}/?user=ann")
            await until(page, "document.querySelector('#state').textContent === 'open'")
            await until(page, "document.querySelector('#conversations li[aria-current=true]') !== null")
            assert await page.text_content("#conversations li[aria-current=true]") == "Lunch"
            assert (await hub.presence.status("ann")).online  # the page is Ann's live stream

            sent = await http.post(f"{API}/conversations/{chat}/messages", json={"text": "Pizza at noon?"})
            assert sent.status_code == 201
            await until(page, "document.querySelectorAll('#messages li').length === 1")
            assert await page.text_content("#messages li") == "samPizza at noon?"

            await page.fill("#send input[name=text]", "Yes!")
            await page.click("#send button[type=submit]")
            await until(page, "document.querySelectorAll('#messages li').length === 2")
            messages = (await http.get(f"{API}/conversations/{chat}/messages")).json()
            assert [(m["sender_id"], m["text"]) for m in messages] == [
                ("sam", "Pizza at noon?"),
                ("ann", "Yes!"),
            ]
        assert not errors, errors


async def test_the_inbox_shows_an_unread_dot_that_reading_on_the_phone_clears(
    context: Any, make_settings: Callable[..., Settings], token: Callable[..., str]
) -> None:
    """A message in a conversation the page does not show lands in Ann's inbox with an unread dot and a badge; Ann
    reads it on her phone (the hub's inbox API with her token) and the dot and the badge go from the web tab by
    themselves (`inbox.changed` on her stream)."""
    hub = Hub(make_settings(env="development"))
    async with InProcessServer(create_app(hub, handle_signals=False), http=PLAIN_PROTOCOL) as server:
        sam = {"Authorization": f"Bearer {token('sam')}"}
        phone = {"Authorization": f"Bearer {token('ann')}"}
        async with httpx.AsyncClient(base_url=server.url, headers=sam) as http:
            for title in ("Lunch", "Work"):  # the page opens the first; the message goes to the second
                await http.post(f"{API}/conversations", json={"title": title, "participants": ["ann"]})
            page = await context.new_page()
            await page.goto(f"{server.url}/?user=ann")
            await until(page, "document.querySelector('#state').textContent === 'open'")
            await until(page, "document.querySelector('#conversations li[aria-current=true]') !== null")
            assert await page.text_content("#conversations li[aria-current=true]") == "Lunch"

            sent = await http.post(f"{API}/conversations/2/messages", json={"text": "Deploy at five"})
            assert sent.status_code == 201
            await until(page, "document.querySelector('#inbox li[data-read=false]') !== null")
            assert await page.text_content("#inbox li .body") == "Deploy at five"
            assert await page.text_content("#unread") == "1"

            items = (await http.get("/hub/v1/inbox", headers=phone)).json()["items"]
            read = await http.post("/hub/v1/inbox/read", headers=phone, json={"ids": [items[0]["id"]]})
            assert read.status_code == 200 and read.json()["counts"]["unread"] == 0
            await until(page, "document.querySelector('#inbox li[data-read=true]') !== null", timeout=1.0)
            assert await page.is_hidden("#unread")
