// Web Push: the service worker (run in a vm with a fake ServiceWorkerGlobalScope) and registerPush() with fakes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import vm from "node:vm";

import { registerPush, urlBase64ToUint8Array } from "../tidings.js";
import { json } from "./fakes.js";

const SW_SOURCE = readFileSync(new URL("../sw.js", import.meta.url), "utf8");
const VAPID = "BEl62iUYgUivxIkv69yViEuiBIa-Ib9-SkvMeAtA3LFgDzkrxZJjSgSnfckjBJuBkr3qBUYIHBQFLXYp5Nksh8U";

// objects made inside the vm have the vm's prototypes: compare them as plain JSON
const plain = (value) => JSON.parse(JSON.stringify(value));

function worker({ location = "https://app.test/v1/sw.js", windows = [], fetchAnswer = 201 } = {}) {
  const listeners = {};
  const shown = [];
  const posted = [];
  const opened = [];
  const fetches = [];
  const badges = [];
  const subscribed = [];
  const clients = windows.map((url) => ({
    url,
    focused: 0,
    focus() {
      this.focused += 1;
      return Promise.resolve(this);
    },
    postMessage: (message) => posted.push({ url, message: plain(message) }),
  }));
  const self = {
    location: new URL(location),
    addEventListener: (type, fn) => {
      listeners[type] = fn;
    },
    skipWaiting: () => {},
    navigator: { setAppBadge: async (n) => badges.push(n) },
    registration: {
      showNotification: async (title, options) => shown.push(plain({ title, ...options })),
      pushManager: {
        subscribe: async (options) => {
          subscribed.push(options);
          return { toJSON: () => ({ endpoint: "https://push.test/new", keys: { p256dh: "p", auth: "a" } }) };
        },
      },
    },
    clients: {
      matchAll: async (options) => {
        assert.deepEqual(plain(options), { type: "window", includeUncontrolled: true });
        return clients;
      },
      openWindow: async (url) => opened.push(url),
      claim: async () => {},
    },
  };
  const context = vm.createContext({
    self,
    URL,
    fetch: async (url, init) => {
      fetches.push({ url, init });
      if (String(url).includes("vapid")) return json(200, { public_key: VAPID });
      return json(fetchAnswer, {});
    },
    atob,
    Uint8Array,
    JSON,
    Promise,
    Error,
  });
  vm.runInContext(SW_SOURCE, context);
  const fire = async (type, event) => {
    let done;
    event.waitUntil = (p) => {
      done = p;
    };
    listeners[type](event);
    await done;
  };
  const pushData = (payload) => ({ data: { json: () => payload, text: () => JSON.stringify(payload) } });
  return { fire, pushData, shown, posted, opened, fetches, badges, subscribed, clients };
}

test("an alert push shows a notification with title, body, tag, icon and url, and sets the badge", async () => {
  const sw = worker({ windows: ["https://app.test/"] });
  const payload = {
    type: "message.new",
    event_id: "1-0",
    url: "/chats/7",
    icon: "/icon.png",
    notification: { title: "Ann", body: "Hi", tag: "chat-7", badge: 3 },
  };
  await sw.fire("push", sw.pushData(payload));
  assert.equal(sw.shown.length, 1);
  const n = sw.shown[0];
  assert.equal(n.title, "Ann");
  assert.equal(n.body, "Hi");
  assert.equal(n.tag, "chat-7");
  assert.equal(n.renotify, true);
  assert.equal(n.icon, "/icon.png");
  assert.equal(n.data.url, "/chats/7");
  assert.equal(n.badge, undefined, "Notification's badge is an image URL, not a count");
  assert.deepEqual(sw.badges, [3]);
  assert.deepEqual(sw.posted.map((p) => p.message.type), ["tidings:push"]); // the tabs hear of it too
});

test("a silent push shows nothing and is forwarded to every open tab", async () => {
  const sw = worker({ windows: ["https://app.test/a", "https://app.test/b"] });
  const payload = { type: "tasks.changed", event_id: "2-0", list_id: "l1" };
  await sw.fire("push", sw.pushData(payload));
  assert.equal(sw.shown.length, 0);
  assert.deepEqual(sw.posted, [
    { url: "https://app.test/a", message: { type: "tidings:push", payload } },
    { url: "https://app.test/b", message: { type: "tidings:push", payload } },
  ]);
});

test("a push without data or with non-JSON data does not throw", async () => {
  const sw = worker();
  await sw.fire("push", { data: null });
  await sw.fire("push", { data: { json: () => JSON.parse("nope"), text: () => "nope" } });
  assert.equal(sw.shown.length, 0);
});

test("a click focuses the tab showing the url, else any tab (told where to go), else opens the url", async () => {
  const note = (url) => ({ notification: { data: { url, payload: { event_id: "1-0" } }, close() {} } });
  const exact = worker({ windows: ["https://app.test/", "https://app.test/chats/7"] });
  await exact.fire("notificationclick", note("/chats/7"));
  assert.deepEqual(exact.clients.map((c) => c.focused), [0, 1]);

  const other = worker({ windows: ["https://app.test/"] });
  await other.fire("notificationclick", note("/chats/7"));
  assert.equal(other.clients[0].focused, 1);
  assert.deepEqual(other.posted[0].message, { type: "tidings:notificationclick", payload: { url: "https://app.test/chats/7", event_id: "1-0" } });

  const none = worker();
  await none.fire("notificationclick", note("/chats/7"));
  assert.deepEqual(none.opened, ["https://app.test/chats/7"]);

  const foreign = worker();
  await foreign.fire("notificationclick", note("https://evil.test/phish"));
  assert.deepEqual(foreign.opened, ["https://app.test/"], "only same-origin URLs are opened");
});

test("pushsubscriptionchange resubscribes with the old key, registers with cookies, and tells the tabs", async () => {
  const sw = worker({ location: "https://app.test/hub/v1/sw.js", windows: ["https://app.test/"], fetchAnswer: 401 });
  const key = new Uint8Array([4, 1, 2]);
  await sw.fire("pushsubscriptionchange", { oldSubscription: { options: { applicationServerKey: key } }, newSubscription: null });
  assert.equal(sw.subscribed.length, 1);
  assert.equal(sw.subscribed[0].applicationServerKey, key);
  assert.equal(sw.subscribed[0].userVisibleOnly, true);
  const post = sw.fetches.find((f) => f.init?.method === "POST");
  assert.equal(post.url, "https://app.test/hub/v1/devices"); // next to the worker: works under a prefix
  assert.equal(post.init.credentials, "include");
  assert.deepEqual(JSON.parse(post.init.body), {
    provider: "webpush",
    platform: "web",
    subscription: { endpoint: "https://push.test/new", keys: { p256dh: "p", auth: "a" } },
  });
  assert.deepEqual(sw.posted[0].message, {
    type: "tidings:pushsubscriptionchange",
    subscription: { endpoint: "https://push.test/new", keys: { p256dh: "p", auth: "a" } },
    registered: false, // the 401: a tab must register it with its token
  });
});

test("pushsubscriptionchange without the old key fetches the VAPID key (?api= for an app's own copy)", async () => {
  const sw = worker({ location: "https://app.test/sw.js?api=https%3A%2F%2Fapp.test%2Fhub%2Fv1%2F" });
  await sw.fire("pushsubscriptionchange", { oldSubscription: null, newSubscription: null });
  assert.equal(sw.fetches[0].url, "https://app.test/hub/v1/webpush/vapid-public-key");
  assert.deepEqual([...sw.subscribed[0].applicationServerKey], [...urlBase64ToUint8Array(VAPID)]);
});

// --- registerPush -------------------------------------------------------------------------------------------------

function page({ permission = "default", grant = "granted", existing = null, deviceStatus = [201] } = {}) {
  const requests = [];
  const storage = new Map();
  const messageListeners = [];
  const subscribeCalls = [];
  let registered = null;
  const subscription = (endpoint, key) => ({
    endpoint,
    options: { applicationServerKey: key.buffer },
    toJSON: () => ({ endpoint, expirationTime: null, keys: { p256dh: "P", auth: "A" } }),
    unsubscribe: async () => {
      subscription.unsubscribed = (subscription.unsubscribed ?? 0) + 1;
      return true;
    },
  });
  const env = {
    baseURI: "https://app.test/shop/",
    now: () => 1_000_000,
    storage: {
      getItem: (k) => storage.get(k) ?? null,
      setItem: (k, v) => storage.set(k, v),
      removeItem: (k) => storage.delete(k),
    },
    Notification: { permission, requestPermission: async () => grant },
    fetch: async (url, init = {}) => {
      requests.push({ url, method: init.method ?? "GET", auth: init.headers?.Authorization, body: init.body });
      if (url.includes("vapid-public-key")) return json(200, { public_key: VAPID });
      if ((init.method ?? "GET") === "POST") return json(deviceStatus.shift() ?? 201, { id: "d1" });
      return json(204, {});
    },
    navigator: {
      serviceWorker: {
        register: async (url, options) => {
          registered = { url, options };
          return {
            active: { state: "activated" },
            pushManager: {
              getSubscription: async () => existing,
              subscribe: async (options) => {
                subscribeCalls.push(options);
                return subscription("https://push.test/s1", urlBase64ToUint8Array(VAPID));
              },
            },
          };
        },
        addEventListener: (type, fn) => messageListeners.push(fn),
        startMessages: () => {},
      },
    },
  };
  return { env, requests, storage, messageListeners, subscribeCalls, registered: () => registered, subscription };
}

test("registerPush: permission, worker, VAPID key, subscribe, register — all under the hub's base", async () => {
  const p = page();
  let n = 0;
  const result = await registerPush({ hub: "/hub/", getToken: () => `tok${++n}`, env: p.env });
  assert.equal(p.registered().url, "https://app.test/hub/v1/sw.js");
  assert.deepEqual([...p.subscribeCalls[0].applicationServerKey], [...urlBase64ToUint8Array(VAPID)]);
  assert.equal(p.subscribeCalls[0].userVisibleOnly, true);
  const post = p.requests.find((r) => r.method === "POST");
  assert.equal(post.url, "https://app.test/hub/v1/devices");
  assert.equal(post.auth, "Bearer tok1");
  assert.deepEqual(JSON.parse(post.body), {
    provider: "webpush",
    platform: "web",
    subscription: { endpoint: "https://push.test/s1", expirationTime: null, keys: { p256dh: "P", auth: "A" } },
  });
  assert.deepEqual(result.device, { id: "d1" });
});

test("registerPush: denied permission is an error with a code", async () => {
  const p = page({ grant: "denied" });
  await assert.rejects(registerPush({ env: p.env }), (error) => error.code === "permission_denied");
});

test("registerPush: a 401 gets one fresh token; a second 401 is an error", async () => {
  const once = page({ deviceStatus: [401, 201] });
  let n = 0;
  await registerPush({ getToken: () => `tok${++n}`, env: once.env });
  assert.deepEqual(once.requests.filter((r) => r.method === "POST").map((r) => r.auth), ["Bearer tok1", "Bearer tok2"]);
  const twice = page({ deviceStatus: [401, 401] });
  await assert.rejects(registerPush({ getToken: () => "x", env: twice.env }), (error) => error.status === 401);
});

test("registerPush: the same subscription is re-registered at most daily; a new one at once, deleting the old", async () => {
  const p = page();
  await registerPush({ getToken: () => "t", env: p.env });
  await registerPush({ getToken: () => "t", env: p.env });
  assert.equal(p.requests.filter((r) => r.method === "POST").length, 1);
  p.storage.set("tidings:push-registration", JSON.stringify({ endpoint: "https://push.test/old", at: 999_000 }));
  await registerPush({ getToken: () => "t", env: p.env });
  assert.equal(p.requests.filter((r) => r.method === "POST").length, 2);
  const del = p.requests.find((r) => r.method === "DELETE");
  assert.equal(del.url, "https://app.test/v1/devices?token=https%3A%2F%2Fpush.test%2Fold");
});

test("registerPush: a subscription made with another VAPID key is replaced", async () => {
  const p = page();
  const stale = p.subscription("https://push.test/stale", new Uint8Array([1, 2, 3]));
  p.env.navigator.serviceWorker.register = async () => ({
    active: {},
    pushManager: { getSubscription: async () => stale, subscribe: async (o) => (p.subscribeCalls.push(o), p.subscription("https://push.test/s2", urlBase64ToUint8Array(VAPID))) },
  });
  const result = await registerPush({ getToken: () => "t", env: p.env });
  assert.equal(p.subscribeCalls.length, 1);
  assert.equal(result.subscription.endpoint, "https://push.test/s2");
});

test("registerPush: the worker's pushsubscriptionchange message is registered with the page's token; pushes reach onPush", async () => {
  const p = page();
  const pushes = [];
  await registerPush({ getToken: () => "page-token", env: p.env, onPush: (payload) => pushes.push(payload) });
  const fresh = { endpoint: "https://push.test/rotated", keys: { p256dh: "P2", auth: "A2" } };
  for (const fn of p.messageListeners) fn({ data: { type: "tidings:pushsubscriptionchange", subscription: fresh, registered: false } });
  for (const fn of p.messageListeners) fn({ data: { type: "tidings:push", payload: { type: "tasks.changed" } } });
  await new Promise((resolve) => setImmediate(resolve));
  const posts = p.requests.filter((r) => r.method === "POST");
  assert.equal(posts.length, 2);
  assert.equal(JSON.parse(posts[1].body).subscription.endpoint, "https://push.test/rotated");
  assert.equal(posts[1].auth, "Bearer page-token");
  assert.deepEqual(pushes, [{ type: "tasks.changed" }]);
});
