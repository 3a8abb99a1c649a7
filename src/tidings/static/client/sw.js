/*
 * sw.js — the tidings service worker (served by the hub at /v1/sw.js; a classic script, so every browser with
 * Web Push can run it).
 *
 * - An alert push (its payload has `notification`) is shown as a notification: title, body, `tag` (the collapse
 *   key: a newer push replaces the older notification), `icon` and `url` from the payload's custom keys
 *   (`push.data` on the server), the badge count through the Badging API where there is one.
 * - Every push, alert or silent, is forwarded to the open tabs of this origin as
 *   `{type: "tidings:push", payload}` (`registerPush({onPush})` receives it): a tab refetches what changed.
 * - A click focuses a tab already showing the push's `url` (or any tab of the origin, told where to go), else
 *   opens the `url`. Only same-origin URLs are opened; anything else opens the origin's root.
 * - `pushsubscriptionchange` (the push service rotated or expired the subscription): resubscribe with the same
 *   VAPID key and register the new subscription at the hub's /v1/devices. The worker has no access to the
 *   page's token, so it tries with cookies (`credentials: "include"`, for hubs using the cookie option) and in
 *   any case tells the open tabs, whose `registerPush` registers it with `getToken()`; with no tab open, the
 *   next `registerPush` on page load registers the current subscription.
 *
 * Where the hub's routes are: next to this script (`./devices`, `./webpush/vapid-public-key`), so a hub mounted
 * under a prefix works as is. An app that serves its own copy of this file passes `?api=<hub's /v1/ URL>`.
 */
"use strict";

const API = new URL(new URL(self.location.href).searchParams.get("api") || "./", self.location.href);
const DEVICES_URL = new URL("devices", API).href;
const VAPID_KEY_URL = new URL("webpush/vapid-public-key", API).href;

self.addEventListener("install", () => {
  self.skipWaiting(); // a new version takes over at once: it has no caches to migrate
});

self.addEventListener("activate", (event) => {
  event.waitUntil(self.clients.claim());
});

function readPayload(data) {
  if (!data) return {};
  try {
    const payload = data.json();
    return payload && typeof payload === "object" ? payload : { value: payload };
  } catch {
    return { text: data.text() };
  }
}

async function windows() {
  return self.clients.matchAll({ type: "window", includeUncontrolled: true });
}

async function tellWindows(message) {
  for (const client of await windows()) client.postMessage(message);
}

function sameOriginUrl(url) {
  try {
    const target = new URL(url || "/", self.location.origin);
    return target.origin === self.location.origin ? target.href : new URL("/", self.location.origin).href;
  } catch {
    return new URL("/", self.location.origin).href;
  }
}

async function onPush(payload) {
  await tellWindows({ type: "tidings:push", payload });
  const shown = payload.notification;
  if (!shown || typeof shown !== "object") return; // silent: the tabs were told; nothing to show
  if (typeof shown.badge === "number" && self.navigator && typeof self.navigator.setAppBadge === "function") {
    await self.navigator.setAppBadge(shown.badge).catch(() => {});
  }
  const options = {
    body: shown.body || "",
    data: { url: payload.url || null, payload },
  };
  if (shown.tag) {
    options.tag = shown.tag;
    options.renotify = true; // a replaced notification still alerts
  }
  if (payload.icon) options.icon = payload.icon;
  await self.registration.showNotification(shown.title || "", options);
}

self.addEventListener("push", (event) => {
  event.waitUntil(onPush(readPayload(event.data)));
});

async function onClick(notification) {
  const data = notification.data || {};
  const url = sameOriginUrl(data.url);
  const open = await windows();
  const exact = open.find((client) => client.url === url);
  if (exact) return exact.focus();
  const any = open.find((client) => "focus" in client);
  if (any) {
    any.postMessage({ type: "tidings:notificationclick", payload: { url, ...(data.payload || {}) } });
    return any.focus();
  }
  return self.clients.openWindow ? self.clients.openWindow(url) : undefined;
}

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(onClick(event.notification));
});

function base64urlToBytes(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

async function applicationServerKey(old) {
  const key = old && old.options && old.options.applicationServerKey;
  if (key) return key;
  const response = await fetch(VAPID_KEY_URL, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`the VAPID key is unavailable (${response.status})`);
  return base64urlToBytes((await response.json()).public_key);
}

async function onSubscriptionChange(event) {
  let subscription = event.newSubscription;
  if (!subscription) {
    const key = await applicationServerKey(event.oldSubscription);
    subscription = await self.registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  }
  const json = subscription.toJSON();
  let registered = false;
  try {
    const response = await fetch(DEVICES_URL, {
      method: "POST",
      credentials: "include",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ provider: "webpush", platform: "web", subscription: json }),
    });
    registered = response.ok;
  } catch {
    registered = false;
  }
  await tellWindows({ type: "tidings:pushsubscriptionchange", subscription: json, registered });
}

self.addEventListener("pushsubscriptionchange", (event) => {
  event.waitUntil(onSubscriptionChange(event));
});
