// The inbox in tidings.js: `connection.inbox.list/counts/markRead/markSeen/archive` over HTTP with the stream's
// credentials, and `onInboxChanged` fed by `inbox.changed` frames, by answers carrying counts, and by a fetch of
// the counts whenever the stream opens.
import { test } from "node:test";
import assert from "node:assert/strict";

import { connect } from "../tidings.js";
import { FakeClock, FakeEventSourceFactory, FakeServer, frame, json, jwt, seeded } from "./fakes.js";

const HUB = "https://hub.test";

/** The inbox routes of a hub, in memory: items, read marks, and the requests it got. */
class FakeInbox {
  constructor() {
    this.items = [
      { id: "3", title: "three", read: false },
      { id: "2", title: "two", read: false },
      { id: "1", title: "one", read: false },
    ];
    this.requests = [];
    this.script = [];
  }

  counts() {
    const unread = this.items.filter((i) => !i.read).length;
    return { unseen: unread, unread, by_category: {} };
  }

  async handle(url, init) {
    const headers = new Headers(init.headers ?? {});
    const body = init.body ? JSON.parse(init.body) : undefined;
    const request = { url: new URL(url), method: init.method ?? "GET", auth: headers.get("authorization"), body, headers };
    this.requests.push(request);
    const step = this.script.shift();
    if (typeof step === "number") return json(step, { error: step === 404 ? "not_found" : "unauthorized", message: "no", field: null });
    const path = request.url.pathname;
    if (path.endsWith("/inbox/counts")) return json(200, this.counts());
    if (path.endsWith("/inbox")) return json(200, { items: this.items, next_cursor: null });
    const what = path.split("/").pop();
    const ids = body.all ? this.items.map((i) => i.id) : body.ids;
    if (what === "read") for (const item of this.items) if (ids.includes(item.id)) item.read = true;
    return json(200, { mark: what, marked: body.all ? 0 : ids.length, up_to: body.all ? "3" : null, counts: this.counts() });
  }
}

function rig(options = {}) {
  const clock = new FakeClock();
  const server = new FakeServer({ clock });
  const inbox = new FakeInbox();
  const got = { events: [], counts: [], errors: [] };
  let n = 0;
  const handle = connect({
    url: `${HUB}/v1/events`,
    getToken: () => jwt({ sub: "ann", exp: Math.floor(clock.now() / 1000) + 3600, n: ++n }),
    onEvent: (e) => got.events.push(e),
    onInboxChanged: (counts) => got.counts.push(counts),
    ...options,
    env: {
      fetch: (url, init) => (new URL(url).pathname.includes("/inbox") ? inbox.handle(url, init ?? {}) : server.fetch(url, init)),
      setTimeout: clock.setTimeout,
      clearTimeout: clock.clearTimeout,
      now: clock.now,
      random: seeded(3),
      window: null,
      document: null,
      BroadcastChannel: undefined,
      locks: null,
      reportError: (error) => got.errors.push(error),
      ...(options.env ?? {}),
    },
  });
  return { clock, server, inbox, handle, got };
}

const changed = (counts) => frame({ type: "inbox.changed", data: JSON.stringify(counts) });

test("inbox.changed frames reach onInboxChanged, never onEvent; the counts are fetched when the stream opens", async () => {
  const { clock, server, inbox, handle, got } = rig();
  await clock.until(() => handle.state === "open" && got.counts.length === 1);
  assert.deepEqual(got.counts, [{ unseen: 3, unread: 3, by_category: {} }]);
  const [fetched] = inbox.requests;
  assert.equal(fetched.url.href, `${HUB}/v1/inbox/counts`);
  assert.match(fetched.auth, /^Bearer /);
  server.sendRaw(changed({ unseen: 1, unread: 4, by_category: { orders: 1 } }));
  const id = server.publish("order.created", { order_id: 1 });
  await clock.advance(1);
  assert.deepEqual(got.counts.at(-1), { unseen: 1, unread: 4, by_category: { orders: 1 } });
  assert.deepEqual(got.events.map((e) => e.id), [id]);
  assert.equal(handle.lastEventId, id); // a state without an id moves nothing
  server.dropAll(); // changes made while it was down are not replayed: it fetches the counts again
  await clock.until(() => handle.state === "open" && inbox.requests.length === 2);
  assert.equal(got.counts.length, 3);
  assert.deepEqual(got.errors, []);
  handle.close();
});

test("list, counts and marks call the inbox next to the stream, and hand their counts on", async () => {
  const { clock, inbox, handle, got } = rig();
  await clock.until(() => handle.state === "open" && got.counts.length === 1);
  assert.equal(handle.inbox.url, `${HUB}/v1/inbox`);
  const page = await handle.inbox.list({ limit: 2, unread: true, category: "orders", cursor: "abc", archived: false });
  assert.deepEqual(page.items.map((i) => i.id), ["3", "2", "1"]);
  const listed = inbox.requests.at(-1).url;
  assert.equal(listed.pathname, "/v1/inbox");
  assert.deepEqual(Object.fromEntries(listed.searchParams), { limit: "2", unread: "true", category: "orders", cursor: "abc" });

  const read = await handle.inbox.markRead(["3", 2]);
  assert.deepEqual(inbox.requests.at(-1).body, { ids: ["3", "2"] });
  assert.equal(inbox.requests.at(-1).headers.get("content-type"), "application/json");
  assert.equal(read.counts.unread, 1);
  assert.deepEqual(got.counts.at(-1), { unseen: 1, unread: 1, by_category: {} }); // this tab at once

  await handle.inbox.markSeen("all", { upTo: "3" });
  assert.equal(inbox.requests.at(-1).url.pathname, "/v1/inbox/seen");
  assert.deepEqual(inbox.requests.at(-1).body, { all: true, up_to: "3" });
  await handle.inbox.archive(["1"]);
  assert.equal(inbox.requests.at(-1).url.pathname, "/v1/inbox/archive");
  await handle.inbox.markRead("all");
  assert.deepEqual(inbox.requests.at(-1).body, { all: true });
  assert.deepEqual(await handle.inbox.counts(), { unseen: 0, unread: 0, by_category: {} });
  handle.close();
});

test("an error answer rejects with its code and status; a 401 is retried once with a fresh token", async () => {
  const { clock, inbox, handle, got } = rig();
  await clock.until(() => handle.state === "open" && got.counts.length === 1);
  inbox.script.push(404);
  await assert.rejects(handle.inbox.markRead(["99"]), (error) => error.code === "not_found" && error.status === 404);
  const before = inbox.requests.at(-1).auth;
  inbox.script.push(401);
  await handle.inbox.counts();
  const [refused, retried] = inbox.requests.slice(-2);
  assert.equal(refused.auth, before);
  assert.notEqual(retried.auth, before); // never the token that got the 401
  inbox.script.push(401, 401);
  await assert.rejects(handle.inbox.list(), (error) => error.status === 401);
  handle.close();
});

test("the inbox URL follows the stream's (a prefix kept, the admin stream's too) unless given", async () => {
  for (const [url, expected] of [
    [`${HUB}/hub/v1/events`, `${HUB}/hub/v1/inbox`],
    [`${HUB}/v1/admin/events`, `${HUB}/v1/inbox`],
  ]) {
    const { clock, handle, got } = rig({ url });
    await clock.until(() => got.counts.length === 1);
    assert.equal(handle.inbox.url, expected);
    handle.close();
  }
  const { handle } = rig({ inboxUrl: "/elsewhere/inbox", env: { baseURI: `${HUB}/app/` } });
  assert.equal(handle.inbox.url, `${HUB}/elsewhere/inbox`);
  handle.close();
});

test("with EventSource, onInboxChanged listens for inbox.changed by name", async () => {
  const clock = new FakeClock();
  const factory = new FakeEventSourceFactory();
  const counts = [];
  const handle = connect({
    url: `${HUB}/v1/events`,
    transport: "eventsource",
    getToken: () => "tok",
    onInboxChanged: (c) => counts.push(c),
    env: {
      EventSource: factory.EventSource,
      fetch: async () => json(200, { unseen: 0, unread: 0, by_category: {} }),
      setTimeout: clock.setTimeout,
      clearTimeout: clock.clearTimeout,
      now: clock.now,
      random: seeded(1),
      window: null,
      document: null,
    },
  });
  await clock.until(() => factory.instances.length === 1);
  factory.last.open();
  await clock.until(() => counts.length === 1);
  factory.last.emit("inbox.changed", JSON.stringify({ unseen: 2, unread: 2, by_category: {} }));
  await clock.advance(1);
  assert.deepEqual(counts.at(-1), { unseen: 2, unread: 2, by_category: {} });
  handle.close();
});
