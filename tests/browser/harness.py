"""The page the browser tests drive: it imports tidings.js from the hub and records what the client reports.

It is served on the hub's own origin by intercepting one URL (`open_harness`), or from another origin by a small
server of its own (`PageServer`, for CORS: Chromium blocks a page that is not itself on loopback from calling a
loopback address, so cross-origin pages must come from a real local server, at `http://<name>.localhost:<port>`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from support import PLAIN_PROTOCOL, InProcessServer

HARNESS_PATH = "/__harness.html"
WAIT_MS = 30_000  # every wait in the page has a deadline; the machine is shared and slow


def harness_html(hub: str) -> str:
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>harness</title></head><body>
<p id="state">loading</p>
<script type="module">
  import * as tidings from "{hub}/v1/client.js";
  window.tidings = tidings;
  window.events = [];
  window.resets = [];
  window.states = [];
  window.tokenCalls = 0;
  window.start = (options) => {{
    const o = {{ ...options }};
    if (o.tokenFrom) {{
      const name = o.tokenFrom;
      delete o.tokenFrom;
      o.getToken = async () => {{ window.tokenCalls += 1; return await window[name](); }};
    }}
    window.handle = tidings.connect({{
      ...o,
      onEvent: (event) => window.events.push({{ id: event.id, type: event.type, data: event.data, at: Date.now() }}),
      onReset: (info) => window.resets.push(info),
      onStateChange: (state) => {{ window.states.push(state); document.getElementById("state").textContent = state; }},
    }});
    return true;
  }};
  window.ready = true;
</script></body></html>"""


async def open_harness(context: Any, hub: str) -> Any:
    """A new tab on the hub's origin showing the harness (the one URL is intercepted; the rest is the hub)."""

    async def fulfil(route: Any) -> None:
        await route.fulfill(body=harness_html(hub), content_type="text/html; charset=utf-8")

    await context.route(f"{hub}{HARNESS_PATH}", fulfil)
    return await goto_harness(context, f"{hub}{HARNESS_PATH}")


async def goto_harness(context: Any, url: str) -> Any:
    page = await context.new_page()
    await page.goto(url)
    await page.wait_for_function("window.ready === true", timeout=WAIT_MS)
    return page


class PageServer(InProcessServer):
    """Serves the harness for any hub (`?hub=`) on a port of its own: a page of another origin."""

    def __init__(self) -> None:
        async def page(request: Request) -> HTMLResponse:
            return HTMLResponse(harness_html(request.query_params["hub"]))

        super().__init__(Starlette(routes=[Route(HARNESS_PATH, page)]), http=PLAIN_PROTOCOL)

    def url_for(self, host: str, hub: str) -> str:
        return f"http://{host}:{self.port}{HARNESS_PATH}?hub={hub}"


async def events_of(page: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = await page.evaluate("window.events")
    return events


async def wait_events(page: Any, count: int, timeout_ms: int = WAIT_MS) -> list[dict[str, Any]]:
    await page.wait_for_function(f"window.events.length >= {count}", timeout=timeout_ms)
    return await events_of(page)


async def wait_for(predicate: Any, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll a Python condition (a server's stream count, say) under a deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def until(page: Any, expression: str, timeout: float = 30.0) -> None:
    """Poll a JavaScript expression with `page.evaluate` (DevTools' evaluation is exempt from the page's CSP,
    unlike `wait_for_function`'s, which a strict `script-src` refuses) until it is truthy, under a deadline."""
    deadline = time.monotonic() + timeout
    while not await page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        await asyncio.sleep(0.03)
