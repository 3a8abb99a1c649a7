// The dashboard's pure helpers (src/tidings/static/dashboard/format.js). That directory ships as static files
// and has no package.json saying "module", so the file is imported from a data: URL (always an ES module).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

const source = readFileSync(new URL("../../../src/tidings/static/dashboard/format.js", import.meta.url), "utf8");
const fmt = await import(`data:text/javascript;base64,${Buffer.from(source).toString("base64")}`);

test("claimsOf reads a JWT payload and refuses what is not one", () => {
  const payload = Buffer.from(JSON.stringify({ sub: "ädmin", roles: ["admin"] })).toString("base64url");
  assert.deepEqual(fmt.claimsOf(`h.${payload}.s`), { sub: "ädmin", roles: ["admin"] });
  assert.equal(fmt.claimsOf("not a token"), null);
  assert.equal(fmt.claimsOf("a.!!!.c"), null);
  assert.equal(fmt.claimsOf(undefined), null);
});

test("eventRate divides published deltas by time, and knows nothing across a restart", () => {
  const at = (s, n) => ({ at: new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString(), events: { published_total: n } });
  assert.equal(fmt.eventRate(at(0, 100), at(2, 110)), 5);
  assert.equal(fmt.eventRate(null, at(2, 110)), null);
  assert.equal(fmt.eventRate(at(2, 110), at(4, 3)), null); // counters went back: the server restarted
  assert.equal(fmt.eventRate(at(2, 110), at(2, 120)), null); // no time passed
});

test("audienceText summarises, cutting long user lists", () => {
  assert.equal(fmt.audienceText({ broadcast: true, users: ["a"] }), "everyone");
  assert.equal(fmt.audienceText({ users: ["a", "b", "c", "d"], users_total: 40, roles: ["admin"], topics: ["orders"] }), "a, b, c +37 · role admin · topic orders");
  assert.equal(fmt.audienceText({ users: ["a"] }), "a");
});

test("buildTestEvent turns the form into a publish body, or names the fields to fix", () => {
  assert.deepEqual(fmt.buildTestEvent({ type: "dashboard.test", users: "alice, bob alice", data: '{"n": 1}', push: "none" }), {
    body: { type: "dashboard.test", data: { n: 1 }, to: { users: ["alice", "bob"] } },
  });
  assert.deepEqual(fmt.buildTestEvent({ type: "x.y", broadcast: true, push: "alert", title: "Hi" }).body, {
    type: "x.y",
    data: {},
    to: { broadcast: true },
    push: { mode: "alert", title: "Hi" },
  });
  assert.equal(fmt.buildTestEvent({ type: "x.y", roles: "admin", push: "silent" }).body.push, "silent");
  const bad = fmt.buildTestEvent({ type: "Order", data: "[1]", push: "alert" }).errors;
  assert.deepEqual(Object.keys(bad).sort(), ["data", "title", "to", "type"]);
  assert.match(fmt.buildTestEvent({ type: "x.y", users: "a", data: "{nope" }).errors.data, /not JSON/);
  assert.ok(fmt.buildTestEvent({ type: "x.1y", users: "a" }).errors.type, "each part starts with a letter, as the hub's TYPE_PATTERN");
});

test("outcome helpers", () => {
  assert.equal(fmt.outcomeTone("delivered"), "good");
  assert.equal(fmt.outcomeTone("dead_token"), "bad");
  assert.equal(fmt.outcomeTone("something_new"), "muted");
  assert.deepEqual(fmt.outcomeRows({ webpush: { delivered: 2, dead_token: 1 }, apns: { delivered: 5 } }), [
    ["apns", { delivered: 5 }, 5],
    ["webpush", { delivered: 2, dead_token: 1 }, 3],
  ]);
});

test("formatting", () => {
  assert.equal(fmt.formatMs(0.42), "0.42 ms");
  assert.equal(fmt.formatMs(38.2), "38 ms");
  assert.equal(fmt.formatMs(1500), "1.5 s");
  assert.equal(fmt.formatMs(null), "–");
  assert.equal(fmt.formatCount(1234), "1234");
  assert.equal(fmt.formatCount(12_345), "12.3k");
  assert.equal(fmt.formatCount(2_500_000), "2.5M");
  const now = new Date(2026, 10, 22, 12, 0, 0);
  assert.equal(fmt.formatTime(new Date(2026, 10, 22, 7, 51, 22).toISOString(), now), "07:51:22");
  assert.equal(fmt.formatTime(new Date(2026, 10, 21, 7, 51, 22).toISOString(), now), "21 Nov 07:51");
  assert.equal(fmt.formatTime("garbage"), "garbage");
});

test("Recent keeps the newest items, newest first", () => {
  const recent = new fmt.Recent(2);
  assert.equal(recent.add(1), undefined);
  recent.add(2);
  assert.equal(recent.add(3), 1);
  assert.deepEqual(recent.items, [3, 2]);
  recent.replace([9, 8, 7]);
  assert.deepEqual(recent.items, [9, 8]);
});

test("inboxState names an item's state for its reader, the unread dot first", () => {
  assert.deepEqual(fmt.inboxState({ seen: false, read: false, archived: false }), ["unread", "good"]);
  assert.deepEqual(fmt.inboxState({ seen: true, read: false, archived: false }), ["seen", "warn"]);
  assert.deepEqual(fmt.inboxState({ seen: true, read: true, archived: false }), ["read", "muted"]);
  assert.deepEqual(fmt.inboxState({ seen: true, read: true, archived: true }), ["archived", "muted"]);
});

test("countsText summarises inbox counts, categories sorted", () => {
  assert.equal(fmt.countsText({ unseen: 5, unread: 3, by_category: { orders: 2, chat: 1 } }), "3 unread · 5 unseen · chat 1, orders 2");
  assert.equal(fmt.countsText({ unseen: 0, unread: 0, by_category: {} }), "0 unread · 0 unseen");
  assert.equal(fmt.countsText(null), "");
});
