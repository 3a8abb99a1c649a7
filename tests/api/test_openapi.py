"""The OpenAPI document describes what the API really takes and answers: the bodies read by hand (publish's one
event or list), and every error answer with the shared error body."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from support import InProcessServer, app_of
from tidings import Hub, Settings
from tidings.api.router import FEATURE_ROUTERS


@pytest.fixture
async def document(make_settings: Callable[..., Settings]) -> dict[str, Any]:
    hub = Hub(make_settings(docs_enabled=True))
    async with InProcessServer(app_of(hub)) as server, httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get("/openapi.json")
    assert response.status_code == 200
    served: dict[str, Any] = response.json()
    return served


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, ops in document["paths"].items() for m, op in ops.items()]


def test_publish_describes_its_body_one_event_or_a_list(document: dict[str, Any]) -> None:
    """Regression: the body is read by hand (after authentication), so the served schema had none."""
    body = document["paths"]["/v1/publish"]["post"]["requestBody"]
    event, batch = body["content"]["application/json"]["schema"]["oneOf"]
    assert body["required"] and {"type", "data", "to", "occurred_at", "push"} <= event["properties"].keys()
    assert event["required"] == ["type", "to"] and event["additionalProperties"] is False
    assert {"users", "roles", "topics", "broadcast"} <= event["properties"]["to"]["properties"].keys()
    assert batch == {"type": "array", "items": event, "minItems": 1}


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/v1/sessions/revoke", {"user_id", "jti"}),
        ("/v1/devices", {"provider", "platform", "token", "topics"}),
    ],
)
def test_every_body_read_by_hand_is_described(document: dict[str, Any], path: str, fields: set[str]) -> None:
    schema = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert fields <= schema["properties"].keys()


def test_every_error_answer_is_documented_with_the_shared_error_body(document: dict[str, Any]) -> None:
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for method, path, operation in operations(document):
        answers = operation["responses"]
        for status, answer in answers.items():
            if status.startswith("4"):
                assert answer["content"]["application/json"]["schema"] == error_ref, (method, path, status)
        if operation.get("security"):
            assert "401" in answers, (method, path)
    assert "HTTPValidationError" not in document["components"]["schemas"]  # FastAPI's shape, not ours
    assert document["components"]["schemas"]["ErrorBody"]["required"] == ["error", "message", "field"]


def test_the_streams_and_their_credentials_are_documented(document: dict[str, Any]) -> None:
    stream = document["paths"]["/v1/events"]["get"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]
    names = {p["name"] for p in stream["parameters"]}
    assert names == {"topics", "last_event_id", "token", "ticket", "Last-Event-ID"}
    assert set(document["components"]["securitySchemes"]) == {"user", "publisher", "metrics"}
    assert document["paths"]["/v1/publish"]["post"]["security"] == [{"publisher": []}]


def test_no_route_has_its_body_parsed_by_the_framework() -> None:
    """Bodies are read by `api/body.py` after authentication: bounded, duplicate keys refused. A body FastAPI
    parsed itself would skip both (and be parsed for anonymous callers)."""
    routes = [
        route
        for name in FEATURE_ROUTERS
        for route in import_module(f"tidings.api.{name}").router.routes
        if isinstance(route, APIRoute)
    ]
    assert len(routes) >= 11 and not [r.path for r in routes if r.body_field is not None]
