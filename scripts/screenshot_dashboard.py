"""Take the README's dashboard screenshot (docs/img/dashboard.png): a development hub with a few streams, some
published events and push attempts, the dashboard signed in with the one-click development login.

    .venv/bin/python scripts/screenshot_dashboard.py [output.png]

It drives Debian's chromium through Playwright, like tests/browser (never a downloaded browser).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path

import httpx
import uvicorn
from playwright.async_api import async_playwright

from tidings import Hub, Settings
from tidings.auth import mint_token
from tidings.push.vapid import VapidKey
from tidings.sandbox.webpush import WebPushSandbox
from tidings.server.app import create_app

OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "dashboard.png"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
PORT = 8766
EVENTS = [
    ("order.created", "alice", None), ("task.assigned", "bob", "silent"), ("chat.message", "carol", "alert"),
    ("order.shipped", "alice", "alert"), ("task.completed", "bob", None), ("order.created", "dave", None),
]  # fmt: skip


async def main(out: Path) -> None:
    data = Path(tempfile.mkdtemp(prefix="tidings-shot-"))
    vapid = data / "vapid.pem"
    vapid.write_bytes(VapidKey.generate().to_pem())
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        env="development",
        data_dir=data,
        dashboard_stats_seconds=1,
        vapid_private_key_path=vapid,
        vapid_subject="mailto:dev@localhost",
        webpush_http_hosts=["127.0.0.1"],
    )
    hub = Hub(settings)
    server = uvicorn.Server(
        uvicorn.Config(create_app(hub, handle_signals=False), port=PORT, log_level="warning")
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for it
        await asyncio.sleep(0.05)
    base = f"http://127.0.0.1:{PORT}"
    secret = hub.settings.jwt_secret
    headers = {"Authorization": f"Bearer {hub.settings.publish_key}"}
    async with (
        WebPushSandbox() as sandbox,
        httpx.AsyncClient(base_url=base, timeout=30) as http,
        contextlib.AsyncExitStack() as open_streams,
    ):
        for user in ("alice", "bob", "carol", "carol"):
            token = mint_token(secret, user)
            response = await open_streams.enter_async_context(
                http.stream("GET", "/v1/events", headers={"Authorization": f"Bearer {token}"})
            )
            assert response.status_code == 200, response.status_code
            if user != "carol":  # a browser of theirs subscribed to Web Push (at the sandbox push service)
                device = {"provider": "webpush", "platform": "web", "subscription": sandbox.subscribe()}
                auth = {"Authorization": f"Bearer {token}"}
                assert (await http.post("/v1/devices", json=device, headers=auth)).status_code in (200, 201)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
            page = await browser.new_page(viewport={"width": 1360, "height": 1020}, device_scale_factor=1)
            await page.goto(f"{base}/dashboard/")
            await page.click("#dev-login")
            await page.wait_for_selector("#stream-state:text('open')")
            for i, (kind, user, push) in enumerate(EVENTS):
                event: dict[str, object] = {"type": kind, "data": {"n": i}, "to": {"users": [user]}}
                if push:
                    event["push"] = (
                        {"mode": push, "title": "Hello", "body": "A test"} if push == "alert" else push
                    )
                await http.post("/v1/publish", json=event, headers=headers)
                await asyncio.sleep(0.3)
            await page.fill("#lookup-user", "alice")
            await page.click("#lookup-form button[type=submit]")
            await page.wait_for_selector("#lookup:not([hidden])")
            for _ in range(12):  # a steady trickle, so events/s shows a rate (it needs two snapshots)
                await http.post(
                    "/v1/publish", json={"type": "system.tick", "to": {"broadcast": True}}, headers=headers
                )
                await asyncio.sleep(0.25)
            out.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(out), full_page=True)
            await browser.close()
    server.should_exit = True
    await task
    print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
