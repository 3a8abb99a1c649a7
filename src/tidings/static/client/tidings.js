/**
 * tidings.js — the browser client of a tidings hub, as one dependency-free ES module (served at /v1/client.js).
 *
 *   import { connect, debounce } from "/v1/client.js";
 *   const refetch = debounce(() => loadOrders(), 1000);
 *   connect({ url: "/v1/events", getToken: () => myApp.token(), onEvent: refetch, onReset: refetch });
 *
 * What it does, and where it deliberately differs from the clients it learned from:
 * - Two transports. "fetch" (the default) streams with fetch + a WHATWG SSE parser of our own, so the token goes
 *   in an Authorization header (never a URL or an access log) and `Last-Event-ID` is sent on every reconnect.
 *   "eventsource" uses the browser's EventSource, which cannot send headers: the token goes in `?ticket=` (a
 *   single-use ticket fetched per connection from `ticketUrl`) or `?token=`; it cannot see HTTP statuses, and
 *   named events reach only listeners registered by name, so it needs the list of event `types`.
 * - Reconnection is ours, never the browser's: exponential backoff with full jitter (0.5 s → 20 s), the server's
 *   `retry:` as a floor, reset after a connection that stayed healthy for 10 s; at once on `online` and when a
 *   hidden tab becomes visible. Unlike the `eventsource` package, no non-200 ends reconnection for good except a
 *   403 and a 401 that a fresh token did not cure.
 * - Tokens: `getToken()` is called before a connection when there is no token, when the token is past its `exp`
 *   (read from the JWT payload, corrected by the server's Date header), shortly before `exp` while a stream is
 *   open (the stream is then renewed and resumed), and once after a 401. Unlike fetch-event-source, a token that
 *   got a 401 is never sent again.
 * - `shared: true`: the tabs of one browser elect a leader (Web Locks; BroadcastChannel heartbeats where Web
 *   Locks are missing); only the leader holds the stream and relays every event, with its id, over a
 *   BroadcastChannel. When the leader goes, the next tab takes over and resumes from the last id it has seen;
 *   every tab drops ids it has already delivered, so a handover neither loses nor duplicates an event.
 *   Seven tabs, one HTTP connection: the browser's six-per-origin limit no longer stalls the seventh.
 * - The inbox: `connection.inbox.list/counts/markRead/markSeen/archive` over HTTP with the same credentials, and
 *   `onInboxChanged(counts)` fed by the stream's `inbox.changed` events, by every answer that carries counts, and
 *   by a fetch of the counts each time the stream (re)opens (`inbox.changed` is a state, not replayed history).
 *
 * Everything that touches the platform (fetch, EventSource, BroadcastChannel, locks, timers, clock, randomness,
 * window and document events) comes from `env`, which defaults to the browser's globals; tests pass fakes.
 */

export const VERSION = "0.1.0";

const BACKOFF = Object.freeze({ initialMs: 500, maxMs: 20_000, healthyMs: 10_000 });
const REFRESH_BEFORE_EXPIRY_MS = 30_000;
const MIN_EXPIRY_TIMER_MS = 10_000; // a wrong clock must not turn token renewal into a reconnect loop
const MAX_TIMER_MS = 2 ** 31 - 1; // setTimeout fires at once beyond this (~24.8 days)
const DEFAULT_RETRY_MS = 3_000; // the server's default `retry:`, for EventSource, which hides the real one
const RECENT_IDS = 2_048; // ids remembered per tab to drop duplicates after a handover
const HEARTBEAT_MS = 1_000; // leader heartbeat when Web Locks are missing
const LEADER_TIMEOUT_MS = 4_000; // a leader silent this long is presumed gone (background tabs throttle timers)
const ELECTION_MS = 250;

// ---------------------------------------------------------------------------------------------------------------
// The SSE parser (WHATWG HTML, "Parsing an event stream")

/**
 * An incremental event-stream parser. Feed it decoded text in any chunking; it calls back per event, per
 * comment and per valid `retry:`. Line ends are CR, LF or CRLF (also when a CRLF is split across chunks); one
 * leading BOM is dropped; `id` values containing NUL are ignored; an unterminated last event is discarded at
 * end of stream, as the specification requires.
 */
export class SSEParser {
  constructor({ onEvent = () => {}, onComment = () => {}, onRetry = () => {} } = {}) {
    this.onEvent = onEvent;
    this.onComment = onComment;
    this.onRetry = onRetry;
    this.lastEventId = "";
    this._buffer = "";
    this._started = false;
    this._afterCR = false;
    this._reset();
  }

  _reset() {
    this._data = "";
    this._hasData = false;
    this._type = "";
    this._idField = false;
  }

  /** Parse a chunk of decoded text. */
  feed(text) {
    if (!this._started && text.length > 0) {
      this._started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (text.length === 0) return;
    if (this._afterCR && text.charCodeAt(0) === 0x0a) text = text.slice(1); // the LF of a split CRLF
    this._afterCR = false;
    let buffer = this._buffer + text;
    let start = 0;
    for (;;) {
      const cr = buffer.indexOf("\r", start);
      const lf = buffer.indexOf("\n", start);
      if (cr < 0 && lf < 0) break;
      let end;
      let next;
      if (cr >= 0 && (lf < 0 || cr < lf)) {
        end = cr;
        if (cr + 1 < buffer.length) next = buffer.charCodeAt(cr + 1) === 0x0a ? cr + 2 : cr + 1;
        else {
          next = cr + 1;
          this._afterCR = true; // the next chunk may begin with the LF of this CRLF
        }
      } else {
        end = lf;
        next = lf + 1;
      }
      this._line(buffer.slice(start, end));
      start = next;
    }
    this._buffer = buffer.slice(start);
  }

  /** The stream ended: an event without its blank line is discarded. */
  end() {
    this._buffer = "";
    this._afterCR = false;
    this._reset();
  }

  _line(line) {
    if (line === "") {
      this._dispatch();
      return;
    }
    if (line.charCodeAt(0) === 0x3a) {
      this.onComment(line.slice(1));
      return;
    }
    const colon = line.indexOf(":");
    let field = line;
    let value = "";
    if (colon >= 0) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.charCodeAt(0) === 0x20) value = value.slice(1);
    }
    switch (field) {
      case "event":
        this._type = value;
        break;
      case "data":
        this._data += value + "\n";
        this._hasData = true;
        break;
      case "id":
        if (!value.includes("\0")) {
          this.lastEventId = value;
          this._idField = true;
        }
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) this.onRetry(parseInt(value, 10));
        break;
      default: // unknown fields are ignored
    }
  }

  _dispatch() {
    const idField = this._idField;
    if (!this._hasData) {
      this._reset();
      return;
    }
    const data = this._data.slice(0, -1);
    const type = this._type || "message";
    this._reset();
    this.onEvent({ type, data, id: this.lastEventId, idField });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Backoff, tokens, small helpers

/**
 * The delay before reconnect attempt `attempt` (0 = first after a failure): full jitter over
 * min(maxMs, initialMs · 2^attempt). A server `retry:` (or Retry-After) is a floor; when the floor wins, up to
 * half of it again is added at random, so clients dropped together do not come back in one instant.
 */
export function backoffDelay(attempt, { initialMs = BACKOFF.initialMs, maxMs = BACKOFF.maxMs, floorMs = 0, random = Math.random } = {}) {
  const cap = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 40));
  const delay = random() * cap;
  if (delay >= floorMs) return delay;
  return floorMs + random() * floorMs * 0.5;
}

/** A JWT's `exp` in epoch seconds, or null when the token is not a JWT or has none. Never verifies. */
export function tokenExpiry(token) {
  if (typeof token !== "string") return null;
  const part = token.split(".")[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((part.length + 3) % 4);
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return typeof claims.exp === "number" ? claims.exp : null;
  } catch {
    return null;
  }
}

/**
 * `fn` at most once per `ms`, on the leading edge (at once) and the trailing edge (once more after the last call
 * of a burst): "refetch at most once a second, and always after the last change". `cancel()` drops a pending
 * trailing call, `flush()` runs it now.
 */
export function debounce(fn, ms, { setTimeout: set = globalThis.setTimeout, clearTimeout: clear = globalThis.clearTimeout } = {}) {
  let timer = null;
  let pending = false;
  let args = [];
  let self;
  const run = () => {
    timer = set(tick, ms);
    fn.apply(self, args);
  };
  const tick = () => {
    timer = null;
    if (pending) {
      pending = false;
      run();
    }
  };
  function debounced(...callArgs) {
    args = callArgs;
    self = this;
    if (timer === null) run();
    else pending = true;
  }
  debounced.cancel = () => {
    if (timer !== null) clear(timer);
    timer = null;
    pending = false;
  };
  debounced.flush = () => {
    if (!pending) return;
    pending = false;
    if (timer !== null) clear(timer);
    run();
  };
  return debounced;
}

/** Remembers the last `size` ids, to drop an event a tab has already delivered. */
export class RecentIds {
  constructor(size = RECENT_IDS) {
    this.size = size;
    this._set = new Set();
    this._ring = [];
  }

  /** True when `id` was seen before; otherwise remembers it. */
  seen(id) {
    if (this._set.has(id)) return true;
    this._set.add(id);
    this._ring.push(id);
    if (this._ring.length > this.size) this._set.delete(this._ring.shift());
    return false;
  }
}

function defaultEnv(env = {}) {
  const g = globalThis;
  // a key present in env wins even when undefined: a test (or a host) can switch a platform feature off
  return {
    fetch: "fetch" in env ? env.fetch : g.fetch?.bind(g),
    EventSource: "EventSource" in env ? env.EventSource : g.EventSource,
    BroadcastChannel: "BroadcastChannel" in env ? env.BroadcastChannel : g.BroadcastChannel,
    locks: "locks" in env ? env.locks : g.navigator?.locks,
    setTimeout: env.setTimeout ?? g.setTimeout.bind(g),
    clearTimeout: env.clearTimeout ?? g.clearTimeout.bind(g),
    now: env.now ?? (() => Date.now()),
    random: env.random ?? Math.random,
    window: "window" in env ? env.window : g.window,
    document: "document" in env ? env.document : g.document,
    baseURI: env.baseURI ?? g.document?.baseURI ?? g.location?.href,
    reportError: env.reportError ?? ((error) => (g.reportError ? g.reportError(error) : console.error(error))),
  };
}

function retryAfterMs(header, now) {
  if (!header) return 0;
  if (/^\s*[0-9]+\s*$/.test(header)) return parseInt(header, 10) * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? 0 : Math.max(0, at - now);
}

function parseJSON(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** A frame as the application sees it: a tidings envelope as sent, anything else as {id, type, data}. */
function toEvent(frame) {
  const parsed = parseJSON(frame.data);
  if (parsed && typeof parsed === "object" && parsed.type === frame.type && "data" in parsed && (parsed.id ?? "") === frame.id) {
    return parsed;
  }
  return { id: frame.idField ? frame.id : undefined, type: frame.type, data: parsed === undefined ? frame.data : parsed };
}

// ---------------------------------------------------------------------------------------------------------------
// One stream: connect, read, decide, wait, again

const TERMINAL = new Set(["unauthorized", "forbidden", "closed"]);

class Stream {
  /** @param sink {{event(e), reset(info), state(state, info)}} */
  constructor(options, env, sink) {
    this.o = options;
    this.env = env;
    this.sink = sink;
    this.state = "idle";
    this.lastEventId = options.lastEventId ?? null;
    this.token = null;
    this.tokenStale = true;
    this.authRetried = false;
    this.failures = 0;
    this.retryMs = 0; // the server's `retry:`: our floor
    this.skewMs = 0; // server clock - our clock, from the Date header when readable
    this.closed = false;
    this._finish = null;
    this._wake = null;
    this._openedAt = null;
    this._expiryTimer = null;
    this._renewedToken = null;
  }

  start() {
    this._loop().catch((error) => this.env.reportError(error));
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this._end({ kind: "closed" });
    if (this._wake) this._wake();
    this._setState("closed", {});
  }

  /** Reconnect now if waiting (online, a tab became visible, or the application asks). */
  wake() {
    if (this._wake) this._wake();
  }

  async _loop() {
    while (!this.closed) {
      this._openedAt = null;
      let result = await this._attempt();
      // a result set by _end (shutdown, renewal) does not know when the connection opened
      if (result.openedAt == null && this._openedAt != null) result = { ...result, openedAt: this._openedAt };
      this._clearExpiryTimer();
      if (this.closed) return;
      const next = this._decide(result);
      if (next.stop) {
        this._setState(next.stop, { status: result.status });
        this.closed = true;
        return;
      }
      await this._pause(next.delay, result);
    }
  }

  _setState(state, info) {
    if (this.state === state && state !== "waiting") return;
    this.state = state;
    this.sink.state(state, info);
  }

  async _attempt() {
    this._setState("connecting", { attempt: this.failures });
    const ended = new Promise((resolve) => {
      this._finish = resolve;
    });
    const controller = new AbortController();
    this._abort = controller;
    const run = (async () => {
      if (this.o.getToken && (this.tokenStale || !this.token || this._expired(this.token))) {
        let token;
        try {
          token = await this.o.getToken();
        } catch (error) {
          return { kind: "token-error", error };
        }
        if (this.closed) return { kind: "closed" };
        if (!token) return { kind: "no-token" };
        this.token = token;
        this.tokenStale = false;
      }
      return this.o.transport === "eventsource" ? this._viaEventSource(controller.signal) : this._viaFetch(controller.signal);
    })();
    return Promise.race([ended, run.catch((error) => ({ kind: "network", error }))]).finally(() => {
      this._finish = null;
      controller.abort();
    });
  }

  /** End the current attempt with `result` (shutdown, token renewal, close). */
  _end(result) {
    if (this._finish) this._finish(result);
    if (this._abort) this._abort.abort();
  }

  _decide(r) {
    const opened = r.openedAt != null;
    if (opened) this.authRetried = false;
    if (opened && this.env.now() - r.openedAt >= this.o.backoff.healthyMs) this.failures = 0;
    switch (r.kind) {
      case "renew":
        this.tokenStale = true;
        return { delay: 0 };
      case "shutdown": // the server's hint is already jittered
        return { delay: this.o.transport === "eventsource" ? DEFAULT_RETRY_MS * (0.5 + this.env.random()) : this.retryMs };
      case "no-token":
        return { stop: "unauthorized" };
      case "http":
        if (r.status === 401) {
          if (!this.o.getToken || this.authRetried) return { stop: "unauthorized" };
          this.authRetried = true;
          this.tokenStale = true; // never send a token that got a 401 again
          return { delay: 0 };
        }
        if (r.status === 403) return { stop: "forbidden" };
        return { delay: this._backoff(r.retryAfterMs ?? 0) };
      default: // network error, stream ended, bad response, getToken threw
        return { delay: this._backoff(0) };
    }
  }

  _backoff(extraFloorMs) {
    const delay = backoffDelay(this.failures, {
      ...this.o.backoff,
      floorMs: Math.max(this.retryMs, extraFloorMs),
      random: this.env.random,
    });
    this.failures += 1;
    return delay;
  }

  _pause(delay, result) {
    if (delay <= 0 || this.closed) return Promise.resolve();
    this._setState("waiting", { delay, attempt: this.failures, status: result.status, error: result.error });
    return new Promise((resolve) => {
      const timer = this.env.setTimeout(() => done(), delay);
      const done = () => {
        this.env.clearTimeout(timer);
        this._wake = null;
        resolve();
      };
      this._wake = done;
    });
  }

  _serverNow() {
    return this.env.now() + this.skewMs;
  }

  _expired(token) {
    const exp = tokenExpiry(token);
    return exp !== null && exp * 1000 <= this._serverNow();
  }

  _noteDate(header) {
    const at = header ? Date.parse(header) : NaN;
    if (!Number.isNaN(at)) this.skewMs = at + 500 - this.env.now(); // Date has whole seconds
  }

  _opened(signal) {
    if (signal.aborted) return; // the attempt already ended (closed, shutdown, renewal)
    this._openedAt = this.env.now();
    this._setState("open", {});
    const exp = this.token ? tokenExpiry(this.token) : null;
    if (exp === null || this.token === this._renewedToken) return; // the same token again: let the server end it
    const remaining = exp * 1000 - this._serverNow();
    const lead = Math.min(this.o.refreshBeforeExpiryMs, Math.max(0, remaining) / 4);
    const delay = Math.max(remaining - lead, MIN_EXPIRY_TIMER_MS);
    if (delay > MAX_TIMER_MS) return; // a token good for weeks: the server's max stream lifetime comes first
    const token = this.token;
    this._expiryTimer = this.env.setTimeout(() => {
      this._expiryTimer = null;
      this._renewedToken = token;
      this._end({ kind: "renew" });
    }, delay);
  }

  _clearExpiryTimer() {
    if (this._expiryTimer !== null) this.env.clearTimeout(this._expiryTimer);
    this._expiryTimer = null;
  }

  _url(params) {
    const url = new URL(this.o.url, this.env.baseURI);
    if (this.o.topics.length) url.searchParams.set("topics", this.o.topics.join(","));
    for (const [key, value] of Object.entries(params)) if (value) url.searchParams.set(key, value);
    return url.href;
  }

  _frame(frame, signal) {
    // Frames read by an attempt that has ended are dropped: lastEventId does not move past them, so the next
    // connection's replay brings them again (and a closed handle delivers nothing more).
    if (signal.aborted) return;
    if (frame.type === "reset") {
      this.sink.reset(parseJSON(frame.data) ?? { reason: frame.data });
      return;
    }
    if (frame.type === "shutdown") {
      this._end({ kind: "shutdown" });
      return;
    }
    const event = toEvent(frame);
    if (frame.idField && frame.id) this.lastEventId = frame.id;
    this.sink.event(event);
  }

  async _viaFetch(signal) {
    const headers = { Accept: "text/event-stream" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
    let response;
    try {
      response = await this.env.fetch(this._url({}), {
        headers,
        signal,
        cache: "no-store",
        credentials: this.o.withCredentials ? "include" : "same-origin",
      });
    } catch (error) {
      return { kind: "network", error };
    }
    this._noteDate(response.headers.get("date"));
    const type = response.headers.get("content-type") || "";
    if (response.status !== 200 || !type.startsWith("text/event-stream")) {
      response.body?.cancel?.().catch(() => {});
      return {
        kind: response.status === 200 ? "bad-response" : "http",
        status: response.status,
        retryAfterMs: retryAfterMs(response.headers.get("retry-after"), this.env.now()),
      };
    }
    const openedAt = this.env.now();
    this._opened(signal);
    const parser = new SSEParser({
      onEvent: (frame) => this._frame(frame, signal),
      onRetry: (ms) => {
        this.retryMs = ms;
      },
    });
    const reader = response.body.getReader();
    const decoder = new TextDecoder("utf-8", { ignoreBOM: true }); // the parser drops the BOM itself
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parser.feed(decoder.decode(value, { stream: true }));
      }
      parser.feed(decoder.decode());
      parser.end();
      return { kind: "ended", openedAt };
    } catch (error) {
      return { kind: "network", error, openedAt };
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  async _ticket(signal) {
    let response;
    try {
      response = await this.env.fetch(new URL(this.o.ticketUrl, this.env.baseURI).href, {
        method: "POST",
        headers: { Authorization: `Bearer ${this.token}`, Accept: "application/json" },
        signal,
        credentials: this.o.withCredentials ? "include" : "same-origin",
      });
    } catch (error) {
      return { result: { kind: "network", error } };
    }
    this._noteDate(response.headers.get("date"));
    if (response.status !== 200 && response.status !== 201) {
      return { result: { kind: "http", status: response.status, retryAfterMs: retryAfterMs(response.headers.get("retry-after"), this.env.now()) } };
    }
    const body = await response.json().catch(() => null);
    return body && body.ticket ? { ticket: body.ticket } : { result: { kind: "bad-response", status: response.status } };
  }

  async _viaEventSource(signal) {
    const params = { last_event_id: this.lastEventId };
    if (this.token && this.o.ticketUrl) {
      const { ticket, result } = await this._ticket(signal);
      if (result) return result;
      params.ticket = ticket;
    } else if (this.token) {
      params.token = this.token;
    }
    if (signal.aborted) return { kind: "closed" };
    return new Promise((resolve) => {
      const source = new this.env.EventSource(this._url(params), { withCredentials: !!this.o.withCredentials });
      let openedAt = null;
      const done = (result) => {
        source.close();
        resolve({ ...result, openedAt });
      };
      signal.addEventListener("abort", () => done({ kind: "closed" }), { once: true });
      source.onopen = () => {
        openedAt = this.env.now();
        this._opened(signal);
      };
      // EventSource hides the status: an error before `open` may be a 401. A token past its exp is renewed;
      // use the fetch transport or a ticket URL to have 401/403 handled exactly.
      source.onerror = () => {
        if (openedAt === null && this.token && this._expired(this.token)) this.tokenStale = true;
        done({ kind: "network" });
      };
      for (const type of new Set(["message", "reset", "shutdown", ...this.o.types])) {
        source.addEventListener(type, (e) => this._frame({ type, data: e.data, id: e.lastEventId, idField: !!e.lastEventId }, signal));
      }
    });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// One connection per browser: leader election and relay

class SharedLink {
  constructor(options, env, local) {
    this.o = options;
    this.env = env;
    this.local = local; // this tab's delivery (dedupe, lastEventId, callbacks)
    this.id = `${env.now().toString(36)}-${Math.floor(env.random() * 2 ** 48).toString(36)}`;
    this.role = "follower";
    this.state = "connecting";
    this.stream = null;
    this.closed = false;
    this.leaderId = null;
    this.lastBeat = env.now();
    this._timers = [];
    const name = `tidings:${options.sharedKey}`;
    this.channel = new env.BroadcastChannel(name);
    this.channel.onmessage = (message) => this._message(message.data);
    this.useLocks = !!env.locks;
    this._post({ t: "hello" });
    if (this.useLocks) this._electWithLocks(name);
    else this._electWithHeartbeats();
  }

  _post(message) {
    if (!this.closed) this.channel.postMessage({ ...message, from: this.id });
  }

  _electWithLocks(name) {
    this._lockAbort = new AbortController();
    this.env.locks
      .request(name, { mode: "exclusive", signal: this._lockAbort.signal }, () => {
        if (this.closed) return undefined;
        return new Promise((release) => {
          this._releaseLock = release;
          this._lead();
        });
      })
      .catch(() => {
        // aborted by close(), or Web Locks refused (e.g. a sandboxed frame): then elect by heartbeats
        if (this.closed || this.role === "leader") return;
        this.useLocks = false;
        this._electWithHeartbeats();
      });
  }

  _lead() {
    this.role = "leader";
    this.leaderId = this.id;
    this.stream = new Stream({ ...this.o, lastEventId: this.local.lastEventId }, this.env, {
      event: (event) => {
        this._post({ t: "event", event });
        this.local.event(event);
      },
      reset: (info) => {
        this._post({ t: "reset", info });
        this.local.reset(info);
      },
      state: (state, info) => {
        this.state = state;
        this._post({ t: "state", state, info: { ...info, error: undefined } });
        this.local.state(state, { ...info, role: "leader" });
      },
    });
    this._post({ t: "beat", state: this.state, lastEventId: this.local.lastEventId });
    this.stream.start();
  }

  _stepDown() {
    this.role = "follower";
    const stream = this.stream;
    this.stream = null;
    if (stream) {
      stream.sink = { event: () => {}, reset: () => {}, state: () => {} };
      stream.close();
    }
  }

  _message(m) {
    if (this.closed || !m || m.from === this.id) return;
    switch (m.t) {
      case "event": // a follower's feed; a leader may get late ones from the tab it replaced: dedupe drops them
        this.local.event(m.event);
        break;
      case "reset":
        this.local.reset(m.info);
        break;
      case "state":
        this._beat(m.from);
        if (this.role === "follower") this._mirror(m.state, m.info);
        break;
      case "hello":
        if (this.role === "leader") this._post({ t: "beat", state: this.state, lastEventId: this.local.lastEventId });
        break;
      case "beat":
        this._beat(m.from);
        if (this.local.lastEventId == null && m.lastEventId) this.local.lastEventId = m.lastEventId;
        if (this.role === "follower") this._mirror(m.state, {});
        break;
      case "wake":
        if (this.stream) this.stream.wake();
        break;
      case "bye":
        if (m.from === this.leaderId && !this.useLocks) this._elect();
        break;
      case "claim":
        this._claim(m.from);
        break;
      default:
    }
  }

  _mirror(state, info) {
    if (state === this.state) return;
    this.state = state;
    this.local.state(state, { ...info, role: "follower" });
  }

  /** Ask the leader to reconnect now (this tab came online or became visible). */
  wake() {
    if (this.stream) this.stream.wake();
    else this._post({ t: "wake" });
  }

  close() {
    if (this.closed) return;
    if (this.role === "leader") {
      // followers must not mirror this tab's "closed": they are about to elect the next leader
      this.stream.sink = { event: () => {}, reset: () => {}, state: () => {} };
      this.stream.close();
      this._post({ t: "bye" });
    }
    this.closed = true;
    for (const timer of this._timers) this.env.clearTimeout(timer);
    if (this._releaseLock) this._releaseLock();
    if (this._lockAbort) this._lockAbort.abort();
    this.channel.close();
    this.local.state("closed", { role: this.role });
  }

  // --- election without Web Locks: heartbeats, and the lowest id among claimants wins -------------------------

  _beat(from) {
    this.lastBeat = this.env.now();
    if (this.useLocks) {
      this.leaderId = from;
      return;
    }
    if (this.role === "leader" && from !== this.id) {
      if (from < this.id) this._stepDown(); // two leaders after a partition: the lower id keeps the stream
      else this._post({ t: "beat", state: this.state, lastEventId: this.local.lastEventId });
    }
    if (this.role === "follower") this.leaderId = from;
  }

  _electWithHeartbeats() {
    const tick = () => {
      if (this.closed) return;
      if (this.role === "leader") this._post({ t: "beat", state: this.state, lastEventId: this.local.lastEventId });
      else if (!this._electing && this.env.now() - this.lastBeat > LEADER_TIMEOUT_MS) this._elect();
      this._timers[0] = this.env.setTimeout(tick, HEARTBEAT_MS);
    };
    this._timers[0] = this.env.setTimeout(tick, HEARTBEAT_MS);
    // a fresh tab waits one election window for an existing leader's answer to its hello
    this._timers[1] = this.env.setTimeout(() => {
      if (this.leaderId === null && !this._electing) this._elect();
    }, ELECTION_MS);
  }

  _elect() {
    if (this.closed || this.role === "leader" || this._electing) return;
    this._electing = true;
    this._candidates = new Set([this.id]);
    const startedAt = this.env.now();
    this._post({ t: "claim" });
    this._timers[2] = this.env.setTimeout(() => {
      this._electing = false;
      if (this.closed || this.lastBeat > startedAt) return; // a leader spoke up meanwhile
      const winner = [...this._candidates].sort()[0];
      if (winner === this.id) this._lead();
      else this.lastBeat = this.env.now(); // give the winner a full timeout to start beating
    }, ELECTION_MS);
  }

  _claim(from) {
    if (this.role === "leader") {
      this._post({ t: "beat", state: this.state, lastEventId: this.local.lastEventId });
      return;
    }
    if (!this._electing) this._elect();
    if (this._electing) this._candidates.add(from);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// connect()

/**
 * Open a stream (or join this browser's shared one) and keep it open until `close()`.
 * Returns a handle: { state, lastEventId, role, reconnect(), close() }.
 */
export function connect(options) {
  if (!options || !options.url) throw new TypeError("connect() needs options.url");
  const env = defaultEnv(options.env);
  const transport = options.transport ?? (env.fetch ? "fetch" : "eventsource");
  if (transport !== "fetch" && transport !== "eventsource") throw new TypeError(`unknown transport ${transport}`);
  if (transport === "fetch" && !env.fetch) throw new TypeError("the fetch transport needs fetch()");
  if (transport === "eventsource" && !env.EventSource) throw new TypeError("the eventsource transport needs EventSource");
  const topics = [...new Set(options.topics ?? [])];
  const o = {
    url: options.url,
    getToken: options.getToken,
    topics,
    types: [...(options.types ?? []), ...(options.onInboxChanged ? [INBOX_CHANGED] : [])],
    transport,
    ticketUrl: options.ticketUrl,
    withCredentials: !!options.withCredentials,
    lastEventId: options.lastEventId ?? null,
    backoff: { ...BACKOFF, ...(options.backoff ?? {}) },
    refreshBeforeExpiryMs: options.refreshBeforeExpiryMs ?? REFRESH_BEFORE_EXPIRY_MS,
    sharedKey: options.sharedKey ?? `${new URL(options.url, env.baseURI).href}|${[...topics].sort().join(",")}`,
  };

  const recent = new RecentIds();
  const call = (fn, ...args) => {
    if (!fn) return;
    try {
      fn(...args);
    } catch (error) {
      env.reportError(error); // an application callback that throws must not break the stream
    }
  };
  const inbox = inboxClient(options, env, (counts) => call(options.onInboxChanged, counts));
  const local = {
    lastEventId: o.lastEventId,
    current: "connecting",
    event(event) {
      if (event.type === INBOX_CHANGED && !event.id) {
        call(options.onInboxChanged, event.data); // not an application event: onEvent never sees it
        return;
      }
      if (event.id) {
        if (recent.seen(event.id)) return;
        local.lastEventId = event.id;
      }
      call(options.onEvent, event);
    },
    reset(info) {
      call(options.onReset, info);
    },
    state(state, info) {
      local.current = state;
      // changes made while the stream was down are not replayed: fetch the counts whenever it opens
      if (state === "open" && options.onInboxChanged) inbox.counts().catch((error) => env.reportError(error));
      call(options.onStateChange, state, info);
    },
  };

  const shared = options.shared && env.BroadcastChannel;
  let link;
  if (shared) {
    link = new SharedLink(o, env, local);
  } else {
    link = new Stream(o, env, local);
    link.start();
  }

  const wake = () => {
    if (!TERMINAL.has(local.current)) link.wake();
  };
  const onVisible = () => {
    if (env.document?.visibilityState === "visible") wake();
  };
  env.window?.addEventListener?.("online", wake);
  env.document?.addEventListener?.("visibilitychange", onVisible);

  return {
    get state() {
      return local.current;
    },
    get lastEventId() {
      return local.lastEventId;
    },
    get role() {
      return shared ? link.role : "direct";
    },
    reconnect: wake,
    close() {
      env.window?.removeEventListener?.("online", wake);
      env.document?.removeEventListener?.("visibilitychange", onVisible);
      link.close();
    },
    inbox,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The inbox

const INBOX_CHANGED = "inbox.changed";

/** `fetch` with the user's credentials: a token from getToken (renewed past its exp, and once after a 401). */
function authorizedFetch(options, env) {
  let token = null;
  const expired = (t) => {
    const exp = tokenExpiry(t);
    return exp !== null && exp * 1000 <= env.now();
  };
  const call = async (url, init = {}, retried = false) => {
    if (options.getToken && (token === null || retried || expired(token))) token = await options.getToken();
    const headers = { ...(init.headers ?? {}), Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await env.fetch(url, { ...init, headers, credentials: options.withCredentials ? "include" : "same-origin" });
    if (response.status === 401 && options.getToken && !retried) return call(url, init, true); // once, fresh
    return response;
  };
  return call;
}

/** The inbox next to a stream URL: `/v1/events` and `/v1/admin/events` → `/v1/inbox` (or options.inboxUrl). */
function inboxUrl(options, env) {
  if (options.inboxUrl) return new URL(options.inboxUrl, env.baseURI);
  const url = new URL(options.url, env.baseURI);
  url.pathname = url.pathname.replace(/(\/admin)?\/events\/?$/, "/inbox");
  url.search = "";
  return url;
}

/** An error the hub answered: `code`, `status`, `field` from its JSON body. */
function inboxError(status, body) {
  const error = new Error(body?.message ?? `the inbox answered ${status}`);
  error.code = body?.error ?? "http_error";
  error.status = status;
  error.field = body?.field ?? null;
  return error;
}

function inboxClient(options, env, counted) {
  const fetchAuthorized = authorizedFetch(options, env);
  const base = inboxUrl(options, env);
  const request = async (method, path, { params, body } = {}) => {
    const url = new URL(base);
    if (path) url.pathname = `${url.pathname.replace(/\/$/, "")}/${path}`;
    for (const [key, value] of Object.entries(params ?? {})) {
      if (value !== undefined && value !== null && value !== false) url.searchParams.set(key, String(value));
    }
    const init = { method };
    if (body !== undefined) {
      init.headers = { "Content-Type": "application/json" };
      init.body = JSON.stringify(body);
    }
    const response = await fetchAuthorized(url.href, init);
    const payload = await response.json().catch(() => null);
    if (!response.ok) throw inboxError(response.status, payload);
    return payload;
  };
  const mark = (what) => async (ids, { upTo } = {}) => {
    const body = ids === "all" ? { all: true, ...(upTo ? { up_to: upTo } : {}) } : { ids: [...ids].map(String) };
    const result = await request("POST", what, { body });
    counted(result.counts); // this tab at once; the others hear it from their streams
    return result;
  };
  return {
    url: base.href,
    /** A page, newest first: {items, next_cursor}. Options: cursor, limit, unread, category, archived. */
    list({ cursor, limit, unread, category, archived } = {}) {
      return request("GET", "", { params: { cursor, limit, unread, category, archived } });
    },
    /** {unseen, unread, by_category}; also handed to onInboxChanged. */
    async counts() {
      const counts = await request("GET", "counts");
      counted(counts);
      return counts;
    },
    markRead: mark("read"),
    markSeen: mark("seen"),
    archive: mark("archive"),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Web Push

/** The applicationServerKey bytes of a base64url VAPID public key. */
export function urlBase64ToUint8Array(base64url) {
  const b64 = base64url.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((base64url.length + 3) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

function sameKey(a, b) {
  if (!a || !b) return false;
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

function activated(registration) {
  if (registration.active) return Promise.resolve(registration);
  const worker = registration.installing || registration.waiting;
  return new Promise((resolve, reject) => {
    if (!worker) {
      reject(new Error("the service worker did not install"));
      return;
    }
    worker.addEventListener("statechange", () => {
      if (worker.state === "activated") resolve(registration);
      if (worker.state === "redundant") reject(new Error("the service worker became redundant"));
    });
  });
}

const PUSH_RECORD = "tidings:push-registration";
const PUSH_REFRESH_MS = 24 * 3600 * 1000; // re-register daily: it refreshes last_seen_at (devices expire unseen)

/**
 * Subscribe this browser to Web Push and register the subscription with the hub. Call it from a user gesture
 * (a click): browsers ask for notification permission then. Returns {subscription, device, unsubscribe()}.
 */
export async function registerPush(options = {}) {
  const g = globalThis;
  const env = {
    navigator: options.env?.navigator ?? g.navigator,
    Notification: options.env && "Notification" in options.env ? options.env.Notification : g.Notification,
    fetch: options.env?.fetch ?? g.fetch?.bind(g),
    storage: options.env && "storage" in options.env ? options.env.storage : g.localStorage,
    now: options.env?.now ?? (() => Date.now()),
    baseURI: options.env?.baseURI ?? g.document?.baseURI ?? g.location?.href,
  };
  const hub = new URL(options.hub ?? "/", env.baseURI);
  const swUrl = new URL(options.swUrl ?? "v1/sw.js", hub);
  const vapidKeyUrl = new URL(options.vapidKeyUrl ?? "v1/webpush/vapid-public-key", hub);
  const devicesUrl = new URL(options.devicesUrl ?? "v1/devices", hub);
  const container = env.navigator?.serviceWorker;
  if (!container) throw pushError("unsupported", "this browser has no service workers (or the page is not https)");
  if (env.Notification && env.Notification.permission !== "granted") {
    const permission = await env.Notification.requestPermission();
    if (permission !== "granted") throw pushError("permission_denied", "notification permission was not granted");
  }
  const registration = await activated(await container.register(swUrl.href, options.scope ? { scope: options.scope } : undefined));

  const keyResponse = await env.fetch(vapidKeyUrl.href, { headers: { Accept: "application/json" } });
  if (!keyResponse.ok) throw pushError("no_vapid_key", `GET ${vapidKeyUrl.pathname} answered ${keyResponse.status}`);
  const key = urlBase64ToUint8Array((await keyResponse.json()).public_key);

  let subscription = await registration.pushManager.getSubscription();
  if (subscription && !sameKey(subscription.options?.applicationServerKey, key)) {
    await subscription.unsubscribe(); // the hub's VAPID key changed: the old subscription cannot be used
    subscription = null;
  }
  subscription ??= await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });

  let token = null;
  const authorized = async (url, init, retried = false) => {
    if (options.getToken && (token === null || retried)) token = await options.getToken();
    const headers = { ...(init.headers ?? {}), Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await env.fetch(url, { ...init, headers, credentials: options.withCredentials ? "include" : "same-origin" });
    if (response.status === 401 && options.getToken && !retried) return authorized(url, init, true); // once, fresh
    return response;
  };
  const record = () => {
    try {
      return JSON.parse(env.storage?.getItem(PUSH_RECORD) ?? "null");
    } catch {
      return null;
    }
  };
  const register = async (sub, force) => {
    const json = typeof sub.toJSON === "function" ? sub.toJSON() : sub;
    const previous = record();
    if (!force && previous?.endpoint === json.endpoint && env.now() - previous.at < PUSH_REFRESH_MS) return null;
    const body = { provider: "webpush", platform: "web", subscription: json };
    if (options.topics) body.topics = options.topics;
    if (options.name) body.name = options.name;
    const response = await authorized(devicesUrl.href, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) throw pushError("register_failed", `POST ${devicesUrl.pathname} answered ${response.status}`, response.status);
    env.storage?.setItem(PUSH_RECORD, JSON.stringify({ endpoint: json.endpoint, at: env.now() }));
    if (previous?.endpoint && previous.endpoint !== json.endpoint) {
      // best effort: the old endpoint would only be disabled at its first 404/410 otherwise
      const url = new URL(devicesUrl);
      url.searchParams.set("token", previous.endpoint);
      authorized(url.href, { method: "DELETE" }).catch(() => {});
    }
    return response.json().catch(() => null);
  };
  const device = await register(subscription, !!options.force);

  container.addEventListener("message", (event) => {
    const data = event.data;
    if (!data || typeof data.type !== "string") return;
    if (data.type === "tidings:pushsubscriptionchange" && !data.registered && data.subscription) {
      register(data.subscription, true).catch((error) => options.onError?.(error));
    } else if (data.type === "tidings:push") {
      options.onPush?.(data.payload);
    } else if (data.type === "tidings:notificationclick") {
      options.onNotificationClick?.(data.payload);
    }
  });
  container.startMessages?.();

  return {
    subscription,
    device,
    async unsubscribe() {
      const url = new URL(devicesUrl);
      url.searchParams.set("token", subscription.endpoint);
      await authorized(url.href, { method: "DELETE" }).catch(() => null);
      env.storage?.removeItem(PUSH_RECORD);
      return subscription.unsubscribe();
    },
  };
}

function pushError(code, message, status) {
  const error = new Error(message);
  error.code = code;
  if (status !== undefined) error.status = status;
  return error;
}
