// Backoff bounds and the full-jitter distribution, the retry floor; debounce's leading + trailing edges.
import { test } from "node:test";
import assert from "node:assert/strict";

import { backoffDelay, debounce, tokenExpiry, RecentIds } from "../tidings.js";
import { FakeClock, seeded, jwt } from "./fakes.js";

test("every delay lies in [0, min(20 s, 0.5 s * 2^attempt))", () => {
  const random = seeded(42);
  for (let attempt = 0; attempt < 12; attempt++) {
    const cap = Math.min(20_000, 500 * 2 ** attempt);
    for (let i = 0; i < 2_000; i++) {
      const delay = backoffDelay(attempt, { random });
      assert.ok(delay >= 0 && delay < cap, `attempt ${attempt}: ${delay} outside [0, ${cap})`);
    }
  }
  assert.equal(backoffDelay(1000, { random: () => 0.999999 }) < 20_000, true); // huge attempts stay capped
  assert.ok(backoffDelay(1000, { random: () => 0.999999 }) > 19_990);
});

test("full jitter: uniform over [0, cap) — mean near cap/2, every decile populated evenly", () => {
  const random = seeded(9);
  const cap = 16_000; // attempt 5
  const n = 20_000;
  const deciles = new Array(10).fill(0);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const delay = backoffDelay(5, { random });
    sum += delay;
    deciles[Math.floor((delay / cap) * 10)] += 1;
  }
  assert.ok(Math.abs(sum / n - cap / 2) < cap * 0.02, `mean ${sum / n}`);
  for (const count of deciles) assert.ok(Math.abs(count - n / 10) < (n / 10) * 0.1, `deciles ${deciles}`);
});

test("the server's retry: is a floor, with up to half of it added so a fleet does not return at once", () => {
  const random = seeded(3);
  const floored = [];
  for (let attempt = 0; attempt < 8; attempt++) {
    for (let i = 0; i < 500; i++) {
      const delay = backoffDelay(attempt, { random, floorMs: 3_000 });
      assert.ok(delay >= 3_000, `${delay} below the floor`);
      assert.ok(delay < Math.max(Math.min(20_000, 500 * 2 ** attempt), 4_500), `${delay} above its bound`);
      if (attempt === 0) floored.push(delay);
    }
  }
  // attempt 0's cap (500 ms) is below the floor: the delays spread over [3 s, 4.5 s), not one instant
  assert.ok(Math.min(...floored) < 3_300 && Math.max(...floored) > 4_200);
});

test("custom bounds", () => {
  assert.equal(backoffDelay(0, { initialMs: 100, random: () => 0.5 }), 50);
  assert.equal(backoffDelay(10, { initialMs: 100, maxMs: 1_000, random: () => 0.5 }), 500);
});

test("tokenExpiry reads exp from a JWT payload (base64url, no padding) and tolerates non-JWTs", () => {
  assert.equal(tokenExpiry(jwt({ sub: "ü-user?>>", exp: 1_900_000_000 })), 1_900_000_000);
  assert.equal(tokenExpiry(jwt({ sub: "a" })), null);
  assert.equal(tokenExpiry("opaque-token"), null);
  assert.equal(tokenExpiry("a.%%%.c"), null);
  assert.equal(tokenExpiry(null), null);
});

test("RecentIds drops repeats and forgets the oldest beyond its size", () => {
  const ids = new RecentIds(3);
  assert.equal(ids.seen("a"), false);
  assert.equal(ids.seen("a"), true);
  ids.seen("b");
  ids.seen("c");
  ids.seen("d"); // "a" falls out
  assert.equal(ids.seen("a"), false);
  assert.equal(ids.seen("d"), true);
});

function debounced(ms) {
  const clock = new FakeClock(0);
  const calls = [];
  const fn = debounce((...args) => calls.push([clock.now(), ...args]), ms, clock);
  return { clock, calls, fn };
}

test("debounce: the first call runs at once, a burst ends with one trailing call carrying the last arguments", async () => {
  const { clock, calls, fn } = debounced(1000);
  fn(1);
  assert.deepEqual(calls, [[0, 1]]);
  await clock.advance(100);
  fn(2);
  await clock.advance(100);
  fn(3);
  assert.equal(calls.length, 1);
  await clock.advance(800);
  assert.deepEqual(calls, [[0, 1], [1000, 3]]);
  await clock.advance(5000);
  assert.equal(calls.length, 2); // nothing pending: no extra call
});

test("debounce: at most once per window during a long burst, and always after the last change", async () => {
  const { clock, calls, fn } = debounced(1000);
  for (let t = 0; t <= 3500; t += 35) {
    fn(t);
    await clock.advance(35);
  }
  await clock.advance(3000);
  const times = calls.map((c) => c[0]);
  assert.deepEqual(times, [0, 1000, 2000, 3000, 4000]);
  for (let i = 1; i < times.length; i++) assert.ok(times[i] - times[i - 1] >= 1000);
  assert.equal(calls.at(-1)[1], 3500 - (3500 % 35)); // the trailing call saw the last change
});

test("debounce: a single call runs once; cancel drops the trailing call; flush runs it now", async () => {
  const { clock, calls, fn } = debounced(500);
  fn("a");
  await clock.advance(2000);
  assert.equal(calls.length, 1);
  fn("b");
  fn("c");
  fn.cancel();
  await clock.advance(2000);
  assert.deepEqual(calls.map((c) => c[1]), ["a", "b"]);
  fn("d"); // window is open again after cancel: runs at once
  fn("e");
  fn.flush();
  assert.deepEqual(calls.map((c) => c[1]), ["a", "b", "d", "e"]);
  await clock.advance(400);
  fn("f"); // flush opened a new window: this one waits for its end
  assert.equal(calls.length, 4);
  await clock.advance(200);
  assert.deepEqual(calls.map((c) => c[1]), ["a", "b", "d", "e", "f"]);
});
