// The EventSource transport: token or ticket in the URL, our own reconnection, named event types.
import { test } from "node:test";
import assert from "node:assert/strict";

import { connect } from "../tidings.js";
import { FakeClock, FakeEventSourceFactory, json, seeded } from "./fakes.js";

function rig(options = {}, fetchAnswers = []) {
  const clock = new FakeClock();
  const factory = new FakeEventSourceFactory();
  const posts = [];
  const got = { events: [], resets: [], states: [] };
  let n = 0;
  const handle = connect({
    url: "https://hub.test/v1/events",
    transport: "eventsource",
    types: ["order.created"],
    topics: ["t1"],
    getToken: () => `tok${++n}`,
    onEvent: (e) => got.events.push(e),
    onReset: (info) => got.resets.push(info),
    onStateChange: (state, info) => got.states.push([state, info]),
    ...options,
    env: {
      EventSource: factory.EventSource,
      fetch: async (url, init) => {
        posts.push({ url, auth: init.headers.Authorization });
        const answer = fetchAnswers.shift() ?? 200;
        return answer === 200 ? json(200, { ticket: `ticket${posts.length}`, expires_in: 60 }) : json(answer, { error: "x" });
      },
      setTimeout: clock.setTimeout,
      clearTimeout: clock.clearTimeout,
      now: clock.now,
      random: seeded(11),
      window: null,
      document: null,
    },
  });
  return { clock, factory, handle, got, posts };
}

const envelope = (id) => JSON.stringify({ id, type: "order.created", data: { order_id: 1 }, occurred_at: "x" });

test("the token goes in ?token= (EventSource cannot send headers), with topics", async () => {
  const { clock, factory, handle, got } = rig();
  await clock.until(() => factory.instances.length === 1);
  const source = factory.last;
  assert.equal(source.url, "https://hub.test/v1/events?topics=t1&token=tok1");
  source.open();
  source.emit("order.created", envelope("5-0"), "5-0");
  assert.equal(handle.state, "open");
  assert.deepEqual(got.events.map((e) => e.id), ["5-0"]);
  handle.close();
});

test("an error closes the EventSource (no browser auto-reconnect) and we reconnect with last_event_id", async () => {
  const { clock, factory, handle } = rig();
  await clock.until(() => factory.instances.length === 1);
  factory.last.open();
  factory.last.emit("order.created", envelope("5-0"), "5-0");
  const first = factory.last;
  first.fail();
  assert.equal(first.readyState, 2);
  await clock.until(() => factory.instances.length === 2);
  assert.match(factory.last.url, /last_event_id=5-0/);
  handle.close();
});

test("with ticketUrl a single-use ticket is fetched with the bearer token for every connection", async () => {
  const { clock, factory, handle, posts } = rig({ ticketUrl: "https://hub.test/v1/stream-tickets" });
  await clock.until(() => factory.instances.length === 1);
  factory.last.open();
  factory.last.fail();
  await clock.until(() => factory.instances.length === 2);
  assert.deepEqual(posts.map((p) => p.auth), ["Bearer tok1", "Bearer tok1"]);
  assert.equal(factory.instances[0].url, "https://hub.test/v1/events?topics=t1&ticket=ticket1");
  assert.match(factory.instances[1].url, /ticket=ticket2/);
  assert.doesNotMatch(factory.instances[1].url, /token=/);
  handle.close();
});

test("a 401 on the ticket request refreshes the token once, then stops with unauthorized", async () => {
  const { clock, factory, handle, posts } = rig({ ticketUrl: "https://hub.test/v1/stream-tickets" }, [401, 401]);
  await clock.until(() => handle.state === "unauthorized");
  assert.deepEqual(posts.map((p) => p.auth), ["Bearer tok1", "Bearer tok2"]);
  assert.equal(factory.instances.length, 0);
});

test("a 403 on the ticket request stops with forbidden; a 503 is retried", async () => {
  const forbidden = rig({ ticketUrl: "https://hub.test/v1/stream-tickets" }, [403]);
  await forbidden.clock.until(() => forbidden.handle.state === "forbidden");
  const busy = rig({ ticketUrl: "https://hub.test/v1/stream-tickets" }, [503, 503]);
  await busy.clock.until(() => busy.factory.instances.length === 1);
  assert.equal(busy.posts.length, 3);
  busy.handle.close();
});

test("reset and shutdown are listened for; shutdown reconnects after a jittered default hint", async () => {
  const { clock, factory, handle, got } = rig();
  await clock.until(() => factory.instances.length === 1);
  factory.last.open();
  factory.last.emit("reset", '{"reason":"history_unavailable"}');
  assert.deepEqual(got.resets, [{ reason: "history_unavailable" }]);
  factory.last.emit("shutdown", '{"reason":"server_shutdown"}');
  await clock.advance(1499);
  assert.equal(factory.instances.length, 1); // at least 0.5 × 3 s
  await clock.advance(3001);
  assert.equal(factory.instances.length, 2); // at most 1.5 × 3 s
  handle.close();
});

test("the eventsource transport needs EventSource", () => {
  assert.throws(() => connect({ url: "https://x.test/", transport: "eventsource", env: { EventSource: undefined, fetch: undefined } }), TypeError);
});
