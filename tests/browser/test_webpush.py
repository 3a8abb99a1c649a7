"""Web Push end to end: `registerPush` in Chromium registers a subscription at /v1/devices, the hub's worker
sends an encrypted push to it, and the service worker (`/v1/sw.js`) shows it and tells the open tab.

What is real and what stands in: Chromium's push service (Google's) cannot be reached here, so
`pushManager.subscribe` would hang. The page's PushManager is replaced (an init script) by one that asks the
sandbox push service (`tidings.sandbox`) for the subscription, keys and all, exactly as a push service mints one.
Everything else is real: the service worker registration, the notification permission, the VAPID key fetched from
the hub, the device registration, the worker's VAPID-signed, aes128gcm-encrypted request, which the sandbox
verifies and decrypts. The last hop, push service to browser, is replayed through DevTools
(`ServiceWorker.deliverPushMessage`): a genuine `push` event in the service worker, carrying the payload the
sandbox decrypted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import InProcessServer, app_of
from tidings import Hub, Settings
from tidings.push.vapid import VapidKey
from tidings.sandbox.webpush import WebPushSandbox

from .harness import open_harness
from .test_streams import PUBLISHER

pytestmark = pytest.mark.asyncio(loop_scope="module")

# The page's PushManager, backed by the sandbox push service (see the module docstring).
SANDBOX_PUSH_MANAGER = """
(() => {
  const bytes = (text) => self.tidings.urlBase64ToUint8Array(text);
  const b64 = (buffer) => btoa(String.fromCharCode(...new Uint8Array(buffer)))
    .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
  let current = null;
  const wrap = (json, key) => ({
    endpoint: json.endpoint,
    expirationTime: null,
    options: { userVisibleOnly: true, applicationServerKey: key },
    getKey: (name) => bytes(json.keys[name]).buffer,
    toJSON: () => ({ endpoint: json.endpoint, expirationTime: null, keys: json.keys }),
    unsubscribe: async () => { current = null; return true; },
  });
  if (self.PushManager) {
    PushManager.prototype.getSubscription = async function () { return current; };
    PushManager.prototype.subscribe = async function (options) {
      const key = new Uint8Array(options.applicationServerKey).buffer;
      current = wrap(await window.sandboxSubscribe(b64(key)), key);
      return current;
    };
  }
})();
"""


async def test_a_push_reaches_the_service_worker_and_the_tab(
    context: Any, make_settings: Callable[..., Settings], token: Callable[..., str], tmp_path: Path
) -> None:
    vapid = tmp_path / "vapid.pem"
    vapid.write_bytes(VapidKey.generate().to_pem())
    settings = make_settings(
        vapid_private_key_path=vapid,
        vapid_subject="mailto:dev@localhost",
        webpush_http_hosts=["127.0.0.1"],
        worker_in_process=True,
    )
    hub = Hub(settings)
    async with WebPushSandbox() as sandbox, InProcessServer(app_of(hub)) as server:
        await context.grant_permissions(["notifications"], origin=server.url)
        await context.expose_function("aliceToken", lambda: token("alice"))
        await context.expose_function("sandboxSubscribe", lambda key: sandbox.subscribe(key))
        await context.add_init_script(SANDBOX_PUSH_MANAGER)
        page = await open_harness(context, server.url)
        cdp = await context.new_cdp_session(page)
        registrations: dict[str, str] = {}
        cdp.on(
            "ServiceWorker.workerRegistrationUpdated",
            lambda e: registrations.update({r["scopeURL"]: r["registrationId"] for r in e["registrations"]}),
        )
        await cdp.send("ServiceWorker.enable")

        endpoint = await page.evaluate(
            """async () => {
                 window.pushes = [];
                 const push = await tidings.registerPush({
                   hub: location.origin + "/", getToken: () => window.aliceToken(),
                   onPush: (payload) => window.pushes.push(payload),
                 });
                 return push.subscription.endpoint;
               }"""
        )
        assert endpoint.startswith(sandbox.url)
        (device,) = await hub.devices.list_for_user("alice")
        assert device.provider == "webpush" and device.token == endpoint  # registered through /v1/devices

        event = {
            "type": "chat.message",
            "data": {"conversation": 7},
            "to": {"users": ["alice"]},
            "push": {"mode": "alert", "title": "Ada", "body": "Lunch?", "collapse_key": "conversation-7"},
        }
        async with httpx.AsyncClient(base_url=server.url, headers=PUBLISHER) as http:
            assert (await http.post("/v1/publish", json=event)).status_code == 202
        async with asyncio.timeout(30):
            while not [r for r in sandbox.state.records if r.get("status") == 201]:
                await asyncio.sleep(0.05)
        (record,) = [r for r in sandbox.state.records if r.get("status") == 201]
        payload = record["payload"]  # decrypted by the sandbox with the subscription's private key
        assert payload["notification"]["title"] == "Ada"

        scope = f"{server.url}/v1/"
        async with asyncio.timeout(10):
            while scope not in registrations:
                await asyncio.sleep(0.05)
        await cdp.send(
            "ServiceWorker.deliverPushMessage",
            {"origin": server.url, "registrationId": registrations[scope], "data": record["plaintext"]},
        )
        await page.wait_for_function("window.pushes.length === 1", timeout=15_000)
        assert await page.evaluate("window.pushes[0]") == payload  # forwarded by the service worker
        shown = await page.evaluate(
            """async () => (await (await navigator.serviceWorker.getRegistration("/v1/")).getNotifications())
                 .map((n) => ({title: n.title, body: n.body, tag: n.tag}))"""
        )
        assert shown == [{"title": "Ada", "body": "Lunch?", "tag": payload["notification"].get("tag", "")}]
