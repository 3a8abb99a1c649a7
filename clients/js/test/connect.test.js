// connect() over the fetch transport against a fake hub: resume, backoff, token refresh, error classes, shutdown.
import { test } from "node:test";
import assert from "node:assert/strict";

import { connect } from "../tidings.js";
import { FakeClock, FakeServer, FakeTarget, frame, json, jwt, seeded } from "./fakes.js";

const URL_ = "https://hub.test/v1/events";

function rig({ server: serverOptions = {}, ...options } = {}) {
  const clock = new FakeClock();
  const server = new FakeServer({ clock, ...serverOptions });
  const window = new FakeTarget();
  const document = new FakeTarget({ visibilityState: "visible" });
  const got = { events: [], states: [], resets: [], errors: [] };
  const tokens = [];
  let n = 0;
  const handle = connect({
    url: URL_,
    getToken: () => {
      const token = `t${++n}`;
      tokens.push(token);
      return token;
    },
    onEvent: (e) => got.events.push(e),
    onReset: (info) => got.resets.push(info),
    onStateChange: (state, info) => got.states.push([state, info]),
    ...options,
    env: {
      fetch: server.fetch,
      setTimeout: clock.setTimeout,
      clearTimeout: clock.clearTimeout,
      now: clock.now,
      random: seeded(5),
      window,
      document,
      BroadcastChannel: undefined,
      locks: null,
      reportError: (error) => got.errors.push(error),
      ...(options.env ?? {}),
    },
  });
  const states = () => got.states.map((s) => s[0]);
  return { clock, server, handle, got, tokens, window, document, states };
}

const authOf = (request) => request.headers.get("authorization");

test("streams events with the token in an Authorization header, never in the URL", async () => {
  const { clock, server, handle, got } = rig({ topics: ["a", "b", "a"] });
  await clock.until(() => handle.state === "open");
  const id = server.publish("order.created", { order_id: 7 });
  await clock.advance(1);
  assert.deepEqual(got.events, [{ id, type: "order.created", data: { order_id: 7 }, occurred_at: "2026-01-01T00:00:00Z" }]);
  const request = server.requests[0];
  assert.equal(authOf(request), "Bearer t1");
  assert.equal(request.headers.get("accept"), "text/event-stream");
  assert.equal(request.url, `${URL_}?topics=a%2Cb`);
  assert.equal(handle.lastEventId, id);
  handle.close();
});

test("a reconnect sends Last-Event-ID and gets exactly the missed events, in order", async () => {
  const { clock, server, handle, got } = rig();
  await clock.until(() => handle.state === "open");
  const first = server.publish();
  await clock.advance(1);
  server.dropAll();
  const missed = [server.publish(), server.publish()]; // published while disconnected
  await clock.until(() => handle.state === "open" && server.requests.length === 2);
  const live = server.publish();
  await clock.advance(1);
  assert.equal(server.requests[1].headers.get("last-event-id"), first);
  assert.deepEqual(got.events.map((e) => e.id), [first, ...missed, live]);
  handle.close();
});

test("Last-Event-ID given at connect is sent on the first request", async () => {
  const { clock, server, handle } = rig({ lastEventId: "1799999999999-0" });
  await clock.until(() => server.requests.length === 1);
  assert.equal(server.requests[0].headers.get("last-event-id"), "1799999999999-0");
  handle.close();
});

test("event: reset calls onReset and the stream goes on", async () => {
  const { clock, server, handle, got } = rig({ lastEventId: "unknown-id" });
  await clock.until(() => handle.state === "open");
  await clock.advance(1);
  assert.deepEqual(got.resets, [{ reason: "history_unavailable" }]);
  const id = server.publish();
  await clock.advance(1);
  assert.deepEqual(got.events.map((e) => e.id), [id]);
  handle.close();
});

test("the server's retry: is the floor of every reconnect delay", async () => {
  const { clock, server, handle, got } = rig({ server: { retry: 5000 } });
  await clock.until(() => handle.state === "open");
  for (let i = 0; i < 4; i++) {
    const before = server.requests.length;
    server.dropAll();
    await clock.until(() => handle.state === "waiting");
    const delay = got.states.at(-1)[1].delay;
    assert.ok(delay >= 5000 && delay < 7500, `delay ${delay}`);
    await clock.advance(4999);
    assert.equal(server.requests.length, before, "reconnected before the floor");
    await clock.until(() => handle.state === "open");
  }
  handle.close();
});

test("backoff grows over failures and resets after a connection that stayed healthy for 10 s", async () => {
  const { clock, server, handle, got } = rig({ server: { retry: 0 } });
  await clock.until(() => handle.state === "open");
  const delays = () => got.states.filter((s) => s[0] === "waiting").map((s) => s[1]);
  // short-lived connections: each counts as a failure
  for (let i = 0; i < 6; i++) {
    server.dropAll();
    await clock.until(() => handle.state === "open");
  }
  const attempts = delays().map((d) => d.attempt);
  assert.deepEqual(attempts, [1, 2, 3, 4, 5, 6]); // the attempt counter after each failure
  // now a healthy connection: 10 s open
  await clock.advance(10_000);
  server.dropAll();
  await clock.until(() => handle.state === "waiting" || server.requests.length === 8);
  const last = delays().at(-1);
  assert.equal(last.attempt, 1);
  assert.ok(last.delay < 500, `after a healthy connection the first delay is under 0.5 s, got ${last.delay}`);
  handle.close();
});

test("a 5xx, 429, 400, a network error or a wrong content type never stops reconnection", async () => {
  const { clock, server, handle } = rig({ server: { retry: 0 } });
  server.script.push(500, 502, 503, 429, 400, 404, new TypeError("failed to fetch"), () =>
    new Response("<html>", { status: 200, headers: { "content-type": "text/html" } }),
  );
  await clock.until(() => handle.state === "open", { maxMs: 600_000 });
  assert.equal(server.requests.length, 9);
  assert.ok(server.requests.every((r) => authOf(r) === "Bearer t1"), "a working token was replaced");
  handle.close();
});

test("Retry-After on a 503 is a floor", async () => {
  const { clock, server, handle, got } = rig({ server: { retry: 0 } });
  server.script.push(() => json(503, { error: "shutting_down" }, { "retry-after": "7" }));
  await clock.until(() => handle.state === "waiting");
  const delay = got.states.at(-1)[1].delay;
  assert.ok(delay >= 7000 && delay < 10_500, `delay ${delay}`);
  handle.close();
});

test("a 401 gets one fresh token and an immediate retry; the stale token is never sent again", async () => {
  const { clock, server, handle, tokens } = rig({ server: { accept: (t) => t !== "t1" || 401 } });
  await clock.until(() => handle.state === "open");
  assert.deepEqual(tokens, ["t1", "t2"]);
  assert.deepEqual(server.requests.map(authOf), ["Bearer t1", "Bearer t2"]);
  assert.equal(server.requests[1].at, server.requests[0].at, "the retry after a refresh waits for nothing");
  handle.close();
});

test("a 401 after the refresh stops with state unauthorized, for good", async () => {
  const { clock, server, handle, tokens, states } = rig({ server: { accept: () => 401 } });
  await clock.until(() => handle.state === "unauthorized");
  assert.deepEqual(tokens, ["t1", "t2"]);
  assert.equal(server.requests.length, 2);
  await clock.advance(600_000);
  assert.equal(server.requests.length, 2);
  assert.deepEqual(states(), ["connecting", "unauthorized"]);
});

test("after a successful connection, a later 401 may refresh once again", async () => {
  let revoked = false; // the server stops accepting t1 after the first connection (e.g. revoked)
  const { clock, server, handle, tokens } = rig({ server: { accept: (t) => (revoked && t === "t1" ? 401 : true), retry: 0 } });
  await clock.until(() => handle.state === "open");
  revoked = true;
  server.dropAll();
  await clock.until(() => server.requests.length === 3 && handle.state === "open");
  assert.deepEqual(tokens, ["t1", "t2"]);
  assert.deepEqual(server.requests.map(authOf), ["Bearer t1", "Bearer t1", "Bearer t2"]);
  handle.close();
});

test("a 403 stops with state forbidden", async () => {
  const { clock, server, handle } = rig({ server: { accept: () => 403 } });
  await clock.until(() => handle.state === "forbidden");
  await clock.advance(600_000);
  assert.equal(server.requests.length, 1);
});

test("without getToken a 401 stops at once (cookie auth cannot be refreshed by us)", async () => {
  const { clock, server, handle } = rig({ getToken: undefined, server: { accept: (t) => (t ? true : 401) } });
  await clock.until(() => handle.state === "unauthorized");
  assert.equal(server.requests.length, 1);
  assert.equal(authOf(server.requests[0]), null);
});

test("getToken returning nothing stops with unauthorized; getToken throwing is retried with backoff", async () => {
  const none = rig({ getToken: () => null });
  await none.clock.until(() => none.handle.state === "unauthorized");
  assert.equal(none.server.requests.length, 0);

  let calls = 0;
  const flaky = rig({
    getToken: async () => {
      calls += 1;
      if (calls < 3) throw new Error("token endpoint down");
      return "good";
    },
  });
  await flaky.clock.until(() => flaky.handle.state === "open");
  assert.equal(calls, 3);
  assert.equal(authOf(flaky.server.requests[0]), "Bearer good");
  flaky.handle.close();
});

test("shortly before the token's exp the stream is renewed with a fresh token and resumed", async () => {
  const clockStart = new FakeClock().now();
  const exp = (offsetS) => Math.floor(clockStart / 1000) + offsetS;
  let n = 0;
  const issued = [];
  const { clock, server, handle, got } = rig({
    getToken: () => {
      const token = jwt({ sub: "alice", exp: exp(3600 * ++n) });
      issued.push(token);
      return token;
    },
  });
  await clock.until(() => handle.state === "open");
  const before = server.publish();
  await clock.advance(3600_000 - 31_000);
  assert.equal(server.requests.length, 1, "renewed too early");
  const during = server.publish();
  await clock.advance(2_000);
  assert.equal(server.requests.length, 2, "not renewed 30 s before exp");
  await clock.until(() => handle.state === "open");
  const after = server.publish();
  await clock.advance(1);
  assert.equal(authOf(server.requests[1]), `Bearer ${issued[1]}`);
  assert.equal(server.requests[1].headers.get("last-event-id"), during);
  assert.equal(server.openCount, 1);
  assert.deepEqual(got.events.map((e) => e.id), [before, during, after]);
  handle.close();
});

test("a token already past its exp is replaced before connecting", async () => {
  const clockNow = new FakeClock().now();
  const tokens = [jwt({ exp: Math.floor(clockNow / 1000) - 10 }), jwt({ exp: Math.floor(clockNow / 1000) + 3600 })];
  const { clock, server, handle } = rig({ server: { retry: 0 }, getToken: () => tokens.shift() });
  await clock.until(() => handle.state === "open");
  server.dropAll(); // the first connection used the expired token (we could not know better), the next must not
  await clock.until(() => server.requests.length === 2);
  assert.notEqual(authOf(server.requests[1]), authOf(server.requests[0]));
  handle.close();
});

test("the expiry check uses the server's clock (Date header) when ours is wrong", async () => {
  const clock0 = new FakeClock().now();
  let n = 0;
  // our clock is one hour behind the server's: a token that expired 10 min ago (server time) looks valid to us
  const { clock, server, handle } = rig({
    server: { date: () => new Date(clock0 + 3600_000).toUTCString(), retry: 0 },
    getToken: () => jwt({ exp: Math.floor(clock0 / 1000) + (++n === 1 ? 3000 : 9000) }),
  });
  await clock.until(() => handle.state === "open");
  server.dropAll();
  await clock.until(() => server.requests.length === 2);
  assert.equal(n, 2, "the token past exp by the server's clock was not refreshed");
  handle.close();
});

test("a proactive renewal that gets the same token back does not loop", async () => {
  const clock0 = new FakeClock().now();
  const token = jwt({ exp: Math.floor(clock0 / 1000) + 120 });
  const { clock, server, handle } = rig({ getToken: () => token });
  await clock.until(() => handle.state === "open");
  await clock.advance(100_000);
  assert.equal(server.requests.length, 2, "exactly one renewal before exp");
  handle.close();
});

test("event: shutdown reconnects after exactly its retry: hint", async () => {
  const { clock, server, handle } = rig();
  await clock.until(() => handle.state === "open");
  server.shutdownAll(1234);
  await clock.advance(1233);
  assert.equal(server.requests.length, 1);
  await clock.advance(2);
  assert.equal(server.requests.length, 2);
  handle.close();
});

test("online and a tab becoming visible reconnect at once; a hidden tab does not", async () => {
  const { clock, server, handle, window, document } = rig({ server: { retry: 60_000 } });
  await clock.until(() => handle.state === "open");
  server.dropAll();
  await clock.until(() => handle.state === "waiting");
  window.dispatch("online");
  await clock.advance(1);
  assert.equal(server.requests.length, 2);
  await clock.until(() => handle.state === "open");
  server.dropAll();
  await clock.until(() => handle.state === "waiting");
  document.visibilityState = "hidden";
  document.dispatch("visibilitychange");
  await clock.advance(1);
  assert.equal(server.requests.length, 2);
  document.visibilityState = "visible";
  document.dispatch("visibilitychange");
  await clock.advance(1);
  assert.equal(server.requests.length, 3);
  handle.close();
});

test("close() ends the stream, stops reconnecting and removes the listeners", async () => {
  const { clock, server, handle, window, states } = rig();
  await clock.until(() => handle.state === "open");
  handle.close();
  await clock.advance(1);
  assert.equal(server.openCount, 0);
  assert.equal(handle.state, "closed");
  window.dispatch("online");
  await clock.advance(600_000);
  assert.equal(server.requests.length, 1);
  assert.equal(window.listeners.get("online").size, 0);
  assert.equal(states().at(-1), "closed");
});

test("an onEvent that throws is reported and does not break the stream", async () => {
  let n = 0;
  const { clock, server, handle, got } = rig({
    onEvent: () => {
      n += 1;
      if (n === 1) throw new Error("app bug");
    },
  });
  await clock.until(() => handle.state === "open");
  server.publish();
  server.publish();
  await clock.advance(1);
  assert.equal(n, 2);
  assert.equal(got.errors.length, 1);
  assert.equal(server.requests.length, 1);
  handle.close();
});

test("UTF-8 split across network chunks and a BOM are decoded right", async () => {
  const bytes = new TextEncoder().encode(`\ufeffretry: 0\n\nid: 1-0\nevent: x.y\ndata: {"id":"1-0","type":"x.y","data":{"t":"héllo 🎉"}}\n\n`);
  const { clock, handle, got } = rig({
    server: {},
    env: {
      fetch: async () =>
        new Response(
          new ReadableStream({
            start(c) {
              for (const b of bytes) c.enqueue(new Uint8Array([b])); // one byte per chunk
            },
          }),
          { status: 200, headers: { "content-type": "text/event-stream" } },
        ),
    },
  });
  await clock.until(() => got.events.length === 1);
  assert.equal(got.events[0].data.t, "héllo 🎉");
  handle.close();
});

test("frames that are not tidings envelopes come as {id, type, data}", async () => {
  const { clock, server, handle, got } = rig();
  await clock.until(() => handle.state === "open");
  server.sendRaw(frame({ id: "9-0", type: "stats", data: '{"connections":3}' }) + frame({ data: "plain text" }));
  await clock.advance(1);
  assert.deepEqual(got.events, [
    { id: "9-0", type: "stats", data: { connections: 3 } },
    { id: undefined, type: "message", data: "plain text" },
  ]);
  handle.close();
});

test("a shutdown after a healthy connection resets the backoff like any healthy end", async () => {
  const { clock, server, handle, got } = rig({ server: { retry: 0 } });
  server.script.push(503, 503, 503);
  await clock.until(() => handle.state === "open");
  await clock.advance(10_000); // healthy
  server.shutdownAll(1000);
  await clock.until(() => handle.state === "open" && server.requests.length === 5);
  server.dropAll(); // a short connection: the first failure after the reset
  await clock.until(() => handle.state === "waiting");
  assert.equal(got.states.at(-1)[1].attempt, 1);
  handle.close();
});

test("close() delivers nothing more, even what was already read from the socket", async () => {
  const { clock, server, handle, got, states } = rig();
  await clock.until(() => handle.state === "open");
  server.publish(); // enqueued: the pending read resolves, its continuation has not run yet
  handle.close();
  await clock.advance(10);
  assert.deepEqual(got.events, []);
  assert.equal(states().at(-1), "closed");
});

test("a token valid for months arms no renewal timer (setTimeout would overflow and fire at once)", async () => {
  const clock0 = new FakeClock().now();
  const token = jwt({ exp: Math.floor(clock0 / 1000) + 90 * 24 * 3600 });
  const { clock, server, handle } = rig({ getToken: () => token });
  await clock.until(() => handle.state === "open");
  await clock.advance(3600_000);
  assert.equal(server.requests.length, 1);
  handle.close();
});
