// One connection per browser: several tabs in one process, sharing an in-memory BroadcastChannel and Web Locks.
import { test } from "node:test";
import assert from "node:assert/strict";

import { connect } from "../tidings.js";
import { BroadcastNet, FakeClock, FakeServer, LockNet, makeTab, seeded } from "./fakes.js";

function browser({ withLocks = true, retry = 500 } = {}) {
  const clock = new FakeClock();
  const server = new FakeServer({ clock, retry });
  const net = new BroadcastNet();
  const locks = new LockNet();
  let n = 0;
  const open = (extra, { locks: lockOverride } = {}) => {
    n += 1;
    const tab = makeTab({ clock, server, net, locks, withLocks, random: seeded(100 + n), name: `tab${n}` });
    if (lockOverride) tab.env.locks = lockOverride;
    tab.handle = connect(tab.options(extra));
    return tab;
  };
  return { clock, server, open };
}

const leaders = (tabs) => tabs.filter((t) => !t.dead && t.handle.role === "leader");

/** Every live tab saw exactly `ids`, in order, once. */
function assertAllGot(tabs, ids) {
  for (const tab of tabs) {
    if (tab.dead) continue;
    assert.deepEqual(tab.events, ids, `${tab.name} (${tab.handle.role})`);
  }
}

for (const withLocks of [true, false]) {
  const how = withLocks ? "Web Locks" : "BroadcastChannel heartbeats";

  test(`seven tabs share one HTTP connection and all receive every event (${how})`, async () => {
    const { clock, server, open } = browser({ withLocks });
    const tabs = [];
    for (let i = 0; i < 7; i++) tabs.push(open());
    await clock.until(() => server.openCount === 1 && tabs.every((t) => t.handle.state === "open"));
    await clock.advance(5_000);
    assert.equal(server.openCount, 1);
    assert.equal(server.streamRequests.length, 1);
    assert.equal(leaders(tabs).length, 1);
    const ids = [];
    for (let i = 0; i < 20; i++) ids.push(server.publish());
    await clock.advance(10);
    assertAllGot(tabs, ids);
    for (const tab of tabs) tab.handle.close();
    await clock.advance(10);
    assert.equal(server.openCount, 0);
  });

  for (const ending of ["closes", "crashes"]) {
    test(`when the leader ${ending}, another tab takes over and resumes: nothing lost, nothing doubled (${how})`, async () => {
      const { clock, server, open } = browser({ withLocks });
      const tabs = [];
      for (let i = 0; i < 4; i++) tabs.push(open());
      await clock.until(() => server.openCount === 1 && tabs.every((t) => t.handle.state === "open"));
      const ids = [server.publish(), server.publish()];
      await clock.advance(10);
      const old = leaders(tabs)[0];
      if (ending === "closes") {
        old.handle.close();
        old.dead = true;
      } else {
        old.crash();
      }
      ids.push(server.publish(), server.publish()); // published while nobody holds the stream
      await clock.until(() => server.openCount === 1 && leaders(tabs).length === 1 && leaders(tabs)[0].handle.state === "open");
      ids.push(server.publish());
      await clock.advance(10);
      assertAllGot(tabs, ids);
      const next = leaders(tabs)[0];
      assert.notEqual(next, old);
      assert.equal(server.streamRequests.at(-1).headers.get("last-event-id"), ids[1]);
      for (const tab of tabs) if (!tab.dead) tab.handle.close();
    });
  }

  test(`a chain of leader deaths while events keep coming (${how})`, async () => {
    const { clock, server, open } = browser({ withLocks });
    const tabs = [];
    for (let i = 0; i < 6; i++) tabs.push(open());
    await clock.until(() => server.openCount === 1 && tabs.every((t) => t.handle.state === "open"));
    const ids = [];
    for (let round = 0; round < 5; round++) {
      ids.push(server.publish());
      await clock.advance(3);
      ids.push(server.publish());
      leaders(tabs)[0].crash();
      ids.push(server.publish());
      await clock.until(() => server.openCount === 1 && leaders(tabs).length === 1 && leaders(tabs)[0].handle.state === "open");
    }
    ids.push(server.publish());
    await clock.advance(10);
    assert.equal(tabs.filter((t) => !t.dead).length, 1);
    assertAllGot(tabs, ids);
  });
}

async function microtasksUntil(condition) {
  for (let i = 0; i < 1000 && !condition(); i++) await Promise.resolve();
  assert.ok(condition(), "condition not reached within microtasks");
}

for (const ending of ["closes", "crashes"]) {
  test(`relays still in flight when the leader ${ending} reach every tab once (the new leader's replay overlaps them)`, async () => {
    const { clock, server, open } = browser();
    const tabs = [];
    for (let i = 0; i < 4; i++) tabs.push(open());
    await clock.until(() => server.openCount === 1 && tabs.every((t) => t.handle.state === "open"));
    const ids = [server.publish()];
    await clock.advance(10);
    const old = leaders(tabs)[0];
    ids.push(server.publish(), server.publish());
    // the leader has read and relayed both, but no follower has processed the relays yet
    await microtasksUntil(() => old.events.length === 3);
    assert.ok(tabs.filter((t) => t !== old).every((t) => t.events.length === 1));
    if (ending === "closes") {
      old.handle.close();
      old.dead = true;
    } else {
      old.crash();
    }
    await clock.until(() => server.openCount === 1 && leaders(tabs).length === 1 && leaders(tabs)[0].handle.state === "open");
    // the new leader resumed from the last id it had processed: its replay repeats the relayed events
    assert.equal(server.streamRequests.at(-1).headers.get("last-event-id"), ids[0]);
    ids.push(server.publish());
    await clock.advance(10);
    assertAllGot(tabs, ids);
    for (const tab of tabs) if (!tab.dead) tab.handle.close();
  });
}

test("when Web Locks refuse (e.g. a sandboxed frame), the tabs elect a leader by heartbeats instead", async () => {
  const { clock, server, open } = browser();
  const refusing = { request: () => Promise.reject(new DOMException("denied", "SecurityError")) };
  const tabs = [0, 1, 2].map(() => open({}, { locks: refusing }));
  await clock.until(() => server.openCount === 1 && tabs.every((t) => t.handle.state === "open"));
  const id = server.publish();
  await clock.advance(10);
  assertAllGot(tabs, [id]);
  for (const tab of tabs) tab.handle.close();
});

test("a tab that joins late gets events from its start, and can lead with the leader's last id", async () => {
  const { clock, server, open } = browser();
  const first = open();
  await clock.until(() => first.handle.state === "open");
  const early = server.publish();
  await clock.advance(10);
  const late = open();
  await clock.until(() => late.handle.state === "open"); // it learnt the state from the leader's answer to hello
  assert.equal(late.handle.lastEventId, early);
  first.crash();
  const missed = server.publish();
  await clock.until(() => late.handle.role === "leader" && late.handle.state === "open");
  assert.equal(server.streamRequests.at(-1).headers.get("last-event-id"), early);
  assert.deepEqual(late.events, [missed]);
  late.handle.close();
});

test("followers mirror the leader's state; a follower's reconnect() wakes the leader", async () => {
  const { clock, server, open } = browser({ retry: 60_000 });
  const a = open();
  const b = open();
  await clock.until(() => server.openCount === 1 && b.handle.state === "open");
  const [leader, follower] = a.handle.role === "leader" ? [a, b] : [b, a];
  assert.equal(follower.handle.role, "follower");
  server.dropAll();
  await clock.until(() => follower.handle.state === "waiting");
  follower.handle.reconnect();
  await clock.advance(5);
  assert.equal(server.streamRequests.length, 2);
  await clock.until(() => follower.handle.state === "open");
  assert.deepEqual(
    follower.states.map((s) => s[0]),
    ["open", "waiting", "connecting", "open"],
  );
  assert.ok(follower.states.every((s) => s[1] === "follower"));
  assert.ok(leader.states.every((s) => s[1] === "leader"));
  a.handle.close();
  b.handle.close();
});

test("a reset is relayed to every tab", async () => {
  const { clock, server, open } = browser();
  const tabs = [open({ lastEventId: "gone-0" }), open({ lastEventId: "gone-0" })];
  await clock.until(() => tabs.every((t) => t.handle.state === "open"));
  await clock.advance(10);
  for (const tab of tabs) assert.deepEqual(tab.resets, [{ reason: "history_unavailable" }]);
  assert.equal(server.openCount, 1);
  for (const tab of tabs) tab.handle.close();
});

test("different topics are different shared streams", async () => {
  const { clock, server, open } = browser();
  const a = open({ topics: ["x"] });
  const b = open({ topics: ["y"] });
  const c = open({ topics: ["x"] });
  await clock.until(() => [a, b, c].every((t) => t.handle.state === "open"));
  assert.equal(server.openCount, 2);
  for (const t of [a, b, c]) t.handle.close();
});

test("without BroadcastChannel, shared falls back to a direct connection", async () => {
  const clock = new FakeClock();
  const server = new FakeServer({ clock });
  const handle = connect({
    url: "https://hub.test/v1/events",
    shared: true,
    env: { fetch: server.fetch, BroadcastChannel: undefined, locks: null, setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout, now: clock.now, window: null, document: null },
  });
  await clock.until(() => handle.state === "open");
  assert.equal(handle.role, "direct");
  handle.close();
});
