"""`POST /v1/publish` over a real socket: auth, batches, and a precise 4xx for every bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from support import PUBLISH_KEY, InProcessServer

AUTH = {"Authorization": f"Bearer {PUBLISH_KEY}"}
EVENT = {"type": "order.created", "data": {"order_id": 1}, "to": {"roles": ["admin"]}}


@pytest.fixture
async def client(server: InProcessServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        yield http


async def test_one_event_gets_one_id(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/publish", json=EVENT, headers=AUTH)
    assert response.status_code == 202
    [event_id] = response.json()["ids"]
    assert event_id.count("-") == 1


async def test_a_batch_gets_ordered_ids(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/publish", json=[EVENT, EVENT, EVENT], headers=AUTH)
    ids = response.json()["ids"]
    assert response.status_code == 202 and len(ids) == 3 and len(set(ids)) == 3
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))


async def test_a_publisher_jwt_may_publish(client: httpx.AsyncClient, token: Callable[..., str]) -> None:
    response = await client.post(
        "/v1/publish", json=EVENT, headers={"Authorization": f"Bearer {token('svc', 'publisher')}"}
    )
    assert response.status_code == 202


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthorized"),
        ({"Authorization": "Bearer wrong"}, 401, "invalid_token"),
        ({"Authorization": "Basic abc"}, 401, "unauthorized"),
    ],
)
async def test_publishing_needs_the_key(
    client: httpx.AsyncClient, headers: dict[str, str], status: int, code: str
) -> None:
    response = await client.post("/v1/publish", json=EVENT, headers=headers)
    assert (response.status_code, response.json()["error"]) == (status, code)


async def test_a_user_jwt_without_the_publisher_role_is_forbidden(
    client: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    response = await client.post(
        "/v1/publish", json=EVENT, headers={"Authorization": f"Bearer {token('alice', 'admin')}"}
    )
    assert response.status_code == 403 and response.json()["error"] == "forbidden"


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({**EVENT, "type": "Bad"}, "type", "pattern"),
        ({**EVENT, "to": {}}, "to", "audience is empty"),
        ({**EVENT, "color": "red"}, "color", "unknown field"),
        ({**EVENT, "id": "1-0"}, "id", "unknown field"),
        ({**EVENT, "data": {"x": "y" * 5000}}, "data", "the limit is 4096"),
        ({**EVENT, "data": [1, 2]}, "data", "dictionary"),
        ({"data": {}, "to": {"users": ["a"]}}, "type", "required"),
        ({**EVENT, "to": {"users": ["a b"]}}, "to.users[0]", "pattern"),
        ([EVENT, {**EVENT, "to": {"topics": []}}], "[1].to", "audience is empty"),
        ([], "", "empty"),
    ],
)
async def test_invalid_events_get_422_naming_the_field(
    client: httpx.AsyncClient, body: Any, field: str, fragment: str
) -> None:
    response = await client.post("/v1/publish", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "validation_error" and (error["field"] or "") == field
    assert fragment in error["message"]


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/publish", content=b'{"type": ', headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_json"


async def test_non_json_content_type_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/publish", content=b"type=x", headers={**AUTH, "Content-Type": "text/plain"}
    )
    assert response.status_code == 415


async def test_oversized_body_is_413_without_reading_it_all(client: httpx.AsyncClient) -> None:
    huge = b"[" + b" " * 5_000_000 + b"]"
    response = await client.post(
        "/v1/publish", content=huge, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 413 and response.json()["error"] == "too_large"


async def test_too_many_events_in_a_batch_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/publish", json=[EVENT] * 101, headers=AUTH)
    assert response.status_code == 413 and response.json()["error"] == "batch_too_large"


async def test_unknown_paths_and_methods_answer_json(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/nope")).json()["error"] == "not_found"
    response = await client.get("/v1/publish")
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"


async def test_a_push_queue_outage_is_a_precise_503_not_a_500(
    server: InProcessServer, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tidings.errors import BusUnavailable

    async def refuse(*args: Any, **kwargs: Any) -> None:
        raise BusUnavailable("queue full")

    monkeypatch.setattr(server.hub.queue, "enqueue", refuse)  # type: ignore[attr-defined]
    response = await client.post("/v1/publish", json={**EVENT, "push": "silent"}, headers=AUTH)
    assert response.status_code == 503 and response.json()["error"] == "push_unavailable"
    assert "reached the streams" in response.json()["message"]
