"""Registration and sending apply one Web Push endpoint policy, so they can never disagree.

Regression: the registry and the Web Push provider each implemented TIDINGS_WEBPUSH_ALLOWED_HOSTS. With an entry
in capitals or with a trailing dot a subscription registered fine and every push to it was then `rejected`;
with a leading-dot wildcard registration refused what sending would have allowed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from registry.conftest import Api, hub_settings, make_app
from registry.helpers import webpush_body
from tidings.api.devices import _per_hub
from tidings.hub import Hub
from tidings.push import build_providers

CASES = [
    ("capitals in the entry", "FCM.googleapis.com", "https://fcm.googleapis.com/fcm/send/x", True),
    ("trailing dot in the entry", "fcm.googleapis.com.", "https://fcm.googleapis.com/fcm/send/x", True),
    ("capitals and dot in the URL", "fcm.googleapis.com", "https://FCM.googleapis.com./fcm/send/x", True),
    ("leading-dot wildcard", ".push.example.com", "https://eu.push.example.com/x", True),
    ("leading-dot wildcard needs a label", ".push.example.com", "https://push.example.com/x", False),
    ("star wildcard", "*.push.example.com", "https://a.b.push.example.com/x", True),
    ("look-alike host", "push.example.com", "https://evilpush.example.com/x", False),
]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """The devices API on SQLite only: the policy does not touch the database."""
    hub = Hub(hub_settings(data_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"))
    async with hub.lifespan():
        transport = httpx.ASGITransport(app=make_app(hub))
        async with httpx.AsyncClient(transport=transport, base_url="http://tidings.test") as client:
            yield Api(client, hub)


async def test_registration_and_sending_agree(api: Api) -> None:
    decisions = {}
    for case, entry, url, _ in CASES:
        api.hub.settings.webpush_allowed_hosts = [entry]
        _per_hub.pop(api.hub, None)  # the route builds its policy once per hub, from the settings
        registered = (await api.register("ana", webpush_body(url))).status_code in (200, 201)
        webpush = build_providers(api.hub.settings)["webpush"]
        try:
            sendable = webpush.endpoint_problem(url) == ""  # type: ignore[attr-defined]
        finally:
            await webpush.aclose()
        decisions[case] = (registered, sendable)
    assert decisions == {case: (allowed, allowed) for case, _, _, allowed in CASES}
