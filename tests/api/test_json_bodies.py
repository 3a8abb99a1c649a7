"""Every JSON body the API reads refuses a key given twice (orjson, like every parser, kept the last one)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from support import PUBLISH_KEY, InProcessServer, app_of, open_stream
from tidings import Hub, Settings

PUBLISHER = {"Authorization": f"Bearer {PUBLISH_KEY}", "Content-Type": "application/json"}


@pytest.fixture
async def served(make_settings: Callable[..., Settings]) -> AsyncIterator[tuple[InProcessServer, Hub]]:
    hub = Hub(make_settings())
    async with InProcessServer(app_of(hub)) as server:
        yield server, hub


async def test_an_audience_given_twice_is_refused_not_turned_into_a_broadcast(
    served: tuple[InProcessServer, Hub], token: Callable[..., str]
) -> None:
    """Regression: `"to": {"users": [...]}` followed by `"to": {"broadcast": true}` was published to everyone."""
    server, hub = served
    body = b'{"type": "order.created", "to": {"users": ["alice"]}, "to": {"broadcast": true}}'
    async with open_stream(server.url, token=token("mallory")) as stream, httpx.AsyncClient() as http:
        response = await http.post(f"{server.url}/v1/publish", content=body, headers=PUBLISHER)
        assert (response.status_code, response.json()["error"]) == (400, "duplicate_key")
        assert '"to"' in response.json()["message"]
        marker = await hub.publish("order.created", {}, to={"users": ["mallory"]})
        assert (await stream.next_event()).id == marker  # nothing reached mallory before it


@pytest.mark.parametrize(
    ("path", "body", "auth"),
    [
        ("/v1/publish", b'[{"type": "a.b", "to": {"users": ["x"], "users": ["y"]}}]', "publisher"),
        ("/v1/publish", b'{"type": "a.b", "type": "c.d", "to": {"broadcast": true}}', "publisher"),
        ("/v1/publish", b'{"type": "a.b", "to": {"users": ["x"]}, "data": {"k": 1, "k": 2}}', "publisher"),
        ("/v1/sessions/revoke", b'{"user_id": "alice", "user_id": "bob"}', "publisher"),
        ("/v1/devices", b'{"provider": "fcm", "platform": "android", "token": "a", "token": "b"}', "user"),
        ("/v1/devices/register", b'{"provider": "fcm", "provider": "apns", "platform": "ios"}', "user"),
    ],
)
async def test_every_body_refuses_a_duplicate_key_with_400(
    served: tuple[InProcessServer, Hub], token: Callable[..., str], path: str, body: bytes, auth: str
) -> None:
    server, _ = served
    headers = PUBLISHER if auth == "publisher" else {"Authorization": f"Bearer {token('alice')}"}
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post(
            path, content=body, headers={**headers, "Content-Type": "application/json"}
        )
    assert (response.status_code, response.json()["error"]) == (400, "duplicate_key"), response.text


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"[" * 300 + b"]" * 300, "invalid_json"),  # nesting is bounded
        (b'{"type": "a.b", "to": {"users": ["x"]}, "data": {"n": 1e400}}', "invalid_json"),
        (b'{"type": "a.b", "to": {"users": ["x"]}, "data": {"n": NaN}}', "invalid_json"),
        (b'{"type": "a.b", "to": {"users": ["\\ud800"]}}', "invalid_json"),
    ],
    ids=["deep", "huge-number", "NaN", "lone-surrogate"],
)
async def test_bodies_json_cannot_carry_are_a_400(
    served: tuple[InProcessServer, Hub], body: bytes, code: str
) -> None:
    server, _ = served
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post("/v1/publish", content=body, headers=PUBLISHER)
    answer: Any = response.json()
    assert (response.status_code, answer["error"]) == (400, code), answer
