"""The dashboard's static files and the stand-in hub of docs/dashboard-api.md, over real sockets.

What a browser would do, done by hand: follow the page's relative URLs from a hub mounted under a prefix, call the
documented routes, and read the live feed while a test event is published. The browser itself (rendering, the
counters moving) is the Playwright phase's job.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from support import PLAIN_PROTOCOL, InProcessServer, parse_frames

from .dashboard_stub import ADMIN_TOKEN, DOC, USER_TOKEN, build_app, examples

STATIC = Path(__file__).resolve().parents[2] / "src" / "tidings" / "static" / "dashboard"
PREFIX = "/hub"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def stub() -> AsyncIterator[str]:
    async with InProcessServer(build_app(prefix=PREFIX), http=PLAIN_PROTOCOL) as server:
        yield server.url + PREFIX


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value and not value.startswith("data:"):
                self.urls.append(value)


def test_every_proposed_route_has_an_example_and_every_example_is_json() -> None:
    found = examples()
    expected = {
        "deliveries", "devices", "config", "dev-token", "stats", "feed-published", "feed-delivery",
        "presence", "test-event-request", "test-event", "stream-ticket",
    }  # fmt: skip
    assert set(found) == expected
    assert DOC.read_text().count("```json dashboard-api:") == len(expected)  # none silently unparsed


def test_the_page_uses_only_relative_urls() -> None:
    """A hub mounted under a prefix must work unchanged: no path may start at the server's root."""
    for name in ("index.html", "dashboard.js", "format.js"):
        text = (STATIC / name).read_text()
        assert not re.search(r"""["'`]/(v1|dashboard|readyz|metrics)\b""", text), name
        assert not re.search(r"""\bapi\(\s*["'`]/""", text), name
    assert 'from "../v1/client.js"' in (STATIC / "dashboard.js").read_text()


async def test_the_page_and_everything_it_loads_resolve_under_a_prefix(stub: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        redirect = await client.get(f"{stub}/dashboard")
        assert redirect.status_code == 307
        assert redirect.headers["location"].endswith(f"{PREFIX}/dashboard/")
        page = await client.get(f"{stub}/dashboard/")
        assert page.status_code == 200 and "<title>tidings" in page.text
        assets = _Assets()
        assets.feed(page.text)
        base = httpx.URL(f"{stub}/dashboard/")
        module = base.join("dashboard.js")
        imports = re.findall(r'from "([^"]+)"', (STATIC / "dashboard.js").read_text())
        urls = [base.join(u) for u in assets.urls] + [module.join(u) for u in imports]
        assert {str(u) for u in urls} >= {f"{stub}/v1/client.js", f"{stub}/dashboard/format.js"}
        for url in urls:
            response = await client.get(url)
            assert response.status_code == 200, url
            assert response.headers["content-type"].split(";")[0] in ("text/css", "text/javascript"), url


async def test_routes_answer_the_documented_examples_and_check_the_token(stub: str) -> None:
    ex = examples()
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(f"{stub}/v1/dashboard/config")).json() == ex["config"]
        dev = await client.post(f"{stub}/v1/admin/dev-token")
        assert dev.json()["token"] == ADMIN_TOKEN
        for path in (
            "v1/admin/stats",
            "v1/admin/deliveries",
            "v1/admin/devices",
            "v1/admin/presence?user_id=x",
        ):
            assert (await client.get(f"{stub}/{path}")).status_code == 401, path
            forbidden = await client.get(f"{stub}/{path}", headers={"Authorization": f"Bearer {USER_TOKEN}"})
            assert forbidden.status_code == 403, path
        stats = (await client.get(f"{stub}/v1/admin/stats", headers=ADMIN)).json()
        assert _shape(stats) == _shape(ex["stats"])
        deliveries = await client.get(f"{stub}/v1/admin/deliveries", headers=ADMIN)
        assert deliveries.json() == ex["deliveries"]
        devices = await client.get(f"{stub}/v1/admin/devices?user_id=alice", headers=ADMIN)
        assert devices.json() == ex["devices"]
        presence = await client.get(f"{stub}/v1/admin/presence?user_id=alice", headers=ADMIN)
        assert presence.json() == ex["presence"]
        bad = await client.post(f"{stub}/v1/admin/test-event", headers=ADMIN, json={"type": "Bad", "to": {}})
        assert bad.status_code == 422 and bad.json()["field"] == "type"


async def test_a_test_event_moves_the_counters_and_reaches_the_feed(stub: str) -> None:
    ex = examples()
    async with httpx.AsyncClient(timeout=10) as client:
        before = (await client.get(f"{stub}/v1/admin/stats", headers=ADMIN)).json()
        async with client.stream("GET", f"{stub}/v1/admin/feed", headers=ADMIN) as feed:
            assert feed.headers["content-type"].startswith("text/event-stream")
            chunks = feed.aiter_text()
            assert "retry: 1000" in await anext(chunks)
            answer = await client.post(
                f"{stub}/v1/admin/test-event", headers=ADMIN, json=ex["test-event-request"]
            )
            assert answer.status_code == 202
            (event_id,) = answer.json()["ids"]
            text = ""
            async with asyncio.timeout(10):
                while not {"published", "delivery"} <= {f.event for f in parse_frames(text)}:
                    text += await anext(chunks)
        frames = {f.event: f.json() for f in parse_frames(text) if f.event in ("published", "delivery")}
        assert frames["published"]["id"] == event_id
        assert frames["published"]["push"] == "alert"
        assert _shape(frames["published"]) == _shape(ex["feed-published"])
        assert frames["delivery"]["event_id"] == event_id
        assert set(frames["delivery"]) == set(ex["feed-delivery"])
        after = (await client.get(f"{stub}/v1/admin/stats", headers=ADMIN)).json()
        assert after["events"]["published_total"] == before["events"]["published_total"] + 1


def _shape(value: object) -> object:
    """Keys and value types, recursively: what must match between an example and an answer."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k not in ("by_provider", "by_role")}
    if isinstance(value, list):
        return "list"  # element shapes are checked where a list is known to be non-empty
    return type(value).__name__


def test_every_element_the_script_uses_is_in_the_page() -> None:
    """No browser here: at least a mistyped element id cannot slip through (it would throw on first use)."""
    script = (STATIC / "dashboard.js").read_text()
    page = (STATIC / "index.html").read_text()
    used = set(re.findall(r"""\$\("([A-Za-z0-9_-]+)"\)""", script))
    present = set(re.findall(r"""\bid="([A-Za-z0-9_-]+)\"""", page))
    assert len(used) > 25
    assert used <= present, used - present
    for name in re.findall(r"form\.elements\.([A-Za-z_]+)", script):
        assert f'name="{name}"' in page, name
