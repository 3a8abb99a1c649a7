// Fakes of the browser platform for tidings.js unit tests: a virtual clock, an SSE server behind fetch (with
// history and resume, like the hub), EventSource, an in-memory BroadcastChannel network and Web Locks, and tabs
// that share them. Nothing here sleeps: time moves only when a test advances the clock.

/** Let every pending promise callback and setImmediate run. */
export async function flush(rounds = 30) {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** A deterministic PRNG (mulberry32), so jitter is reproducible. */
export function seeded(seed = 1) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class FakeClock {
  constructor(start = Date.UTC(2026, 0, 1)) {
    this.t = start;
    this.timers = new Map();
    this.seq = 0;
    this.now = () => this.t;
    this.setTimeout = (fn, ms = 0) => {
      const id = ++this.seq;
      if (!(ms <= 2 ** 31 - 1)) ms = 1; // like browsers and node: a delay beyond 32 bits fires at once
      this.timers.set(id, { at: this.t + Math.max(0, ms), fn, id });
      return id;
    };
    this.clearTimeout = (id) => {
      this.timers.delete(id);
    };
  }

  /** Move time forward by `ms`, running due timers in order and letting promises settle after each. */
  async advance(ms) {
    const end = this.t + ms;
    for (;;) {
      await flush();
      let next = null;
      for (const timer of this.timers.values()) {
        if (timer.at <= end && (next === null || timer.at < next.at || (timer.at === next.at && timer.id < next.id))) next = timer;
      }
      if (next === null) break;
      this.timers.delete(next.id);
      this.t = Math.max(this.t, next.at);
      next.fn();
    }
    this.t = end;
    await flush();
  }

  /** Advance in steps until `condition()` holds; fails after `maxMs` of virtual time. */
  async until(condition, { maxMs = 120_000, stepMs = 50 } = {}) {
    const deadline = this.t + maxMs;
    await flush();
    while (!condition()) {
      if (this.t >= deadline) throw new Error(`condition not met within ${maxMs} ms of virtual time`);
      await this.advance(stepMs);
    }
  }
}

const encoder = new TextEncoder();

export function frame({ id, type, data, retry }) {
  let out = "";
  if (id !== undefined) out += `id: ${id}\n`;
  if (type !== undefined) out += `event: ${type}\n`;
  if (retry !== undefined) out += `retry: ${retry}\n`;
  return `${out}data: ${data}\n\n`;
}

export function base64url(text) {
  return Buffer.from(text).toString("base64url");
}

/** An unsigned JWT-shaped token (the client only reads its payload). */
export function jwt(claims) {
  return `${base64url('{"alg":"HS256","typ":"JWT"}')}.${base64url(JSON.stringify(claims))}.sig`;
}

/**
 * A stream server like the hub: GET with a valid bearer token answers an event stream (`retry:`, `:ok`, replay
 * after Last-Event-ID or `event: reset` when the id is outside the history, then live events). `script` holds
 * answers for the next requests: a number (that status, JSON error), an Error (a network failure) or a function
 * returning a Response.
 */
export class FakeServer {
  constructor({ clock, retry = 3000, accept = () => true, historySize = 1000, date = null } = {}) {
    this.clock = clock;
    this.retry = retry;
    this.accept = accept; // (token, request) => true | 401 | 403
    this.historySize = historySize;
    this.date = date; // () => Date header value, or null for none
    this.history = [];
    this.streams = new Set();
    this.requests = [];
    this.script = [];
    this.seq = 0;
    this.fetch = (url, init, tab) => this.handle(url, init ?? {}, tab);
  }

  get openCount() {
    return this.streams.size;
  }

  async handle(url, init, tab) {
    const headers = new Headers(init.headers ?? {});
    const request = { url: String(url), method: init.method ?? "GET", headers, tab, at: this.clock?.now() };
    this.requests.push(request);
    const step = this.script.shift();
    if (step instanceof Error) throw step;
    if (typeof step === "function") return step(request);
    const extra = this.date ? { date: this.date() } : {};
    if (typeof step === "number") return json(step, { error: "scripted" }, extra);
    const auth = headers.get("authorization");
    const verdict = this.accept(auth ? auth.replace(/^Bearer /, "") : null, request);
    if (verdict === 401 || verdict === false) return json(401, { error: "unauthorized" }, extra);
    if (verdict === 403) return json(403, { error: "forbidden" }, extra);
    return this.open(request, init.signal, extra);
  }

  open(request, signal, extra) {
    let controller;
    const body = new ReadableStream({
      start(c) {
        controller = c;
      },
    });
    const stream = { controller, request, tab: request.tab };
    const send = (text) => {
      try {
        controller.enqueue(encoder.encode(text));
      } catch {
        /* closed */
      }
    };
    stream.send = send;
    this.streams.add(stream);
    signal?.addEventListener("abort", () => {
      this.streams.delete(stream);
      try {
        controller.error(new DOMException("aborted", "AbortError"));
      } catch {
        /* already closed */
      }
    });
    send(`retry: ${this.retry}\n:ok\n\n`);
    const last = request.headers.get("last-event-id") ?? new URL(request.url).searchParams.get("last_event_id");
    if (last) {
      const index = this.history.findIndex((e) => e.id === last);
      if (index < 0) send(frame({ type: "reset", data: '{"reason":"history_unavailable"}' }));
      else for (const e of this.history.slice(index + 1)) send(this.encode(e));
    }
    return new Response(body, { status: 200, headers: { "content-type": "text/event-stream; charset=utf-8", ...extra } });
  }

  encode(e) {
    return frame({ id: e.id, type: e.type, data: JSON.stringify(e) });
  }

  /** Publish an event to every open stream; returns its id. */
  publish(type = "order.created", data = {}) {
    const event = { id: `${1_800_000_000_000 + ++this.seq}-0`, type, data, occurred_at: "2026-01-01T00:00:00Z" };
    this.history.push(event);
    if (this.history.length > this.historySize) this.history.shift();
    for (const stream of this.streams) stream.send(this.encode(event));
    return event.id;
  }

  /** Send raw text to every open stream. */
  sendRaw(text) {
    for (const stream of this.streams) stream.send(text);
  }

  /** End every stream cleanly (a restart or the network dropping them). */
  dropAll() {
    for (const stream of this.streams) {
      try {
        stream.controller.close();
      } catch {
        /* already closed */
      }
    }
    this.streams.clear();
  }

  /** What the hub does on SIGTERM: `event: shutdown` with a `retry:` hint, then the end of the stream. */
  shutdownAll(retry) {
    this.sendRaw(frame({ type: "shutdown", retry, data: '{"reason":"server_shutdown"}' }));
    this.dropAll();
  }

  /** A tab died: its connections break. */
  dropTab(tab) {
    for (const stream of [...this.streams]) {
      if (stream.tab !== tab) continue;
      this.streams.delete(stream);
      try {
        stream.controller.error(new TypeError("network error"));
      } catch {
        /* closed */
      }
    }
  }

  get streamRequests() {
    return this.requests.filter((r) => r.method === "GET");
  }
}

export function json(status, body, headers = {}) {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
}

/** EventSource, scripted by the test: `open()`, `emit(type, data, id)`, `fail()`. */
export class FakeEventSourceFactory {
  constructor() {
    this.instances = [];
    const factory = this;
    this.EventSource = class {
      constructor(url, init) {
        this.url = url;
        this.init = init;
        this.readyState = 0;
        this.listeners = new Map();
        this.onopen = null;
        this.onerror = null;
        factory.instances.push(this);
      }
      addEventListener(type, fn) {
        if (!this.listeners.has(type)) this.listeners.set(type, []);
        this.listeners.get(type).push(fn);
      }
      close() {
        this.readyState = 2;
      }
      open() {
        this.readyState = 1;
        this.onopen?.({});
      }
      emit(type, data, lastEventId = "") {
        for (const fn of this.listeners.get(type) ?? []) fn({ type, data, lastEventId });
      }
      fail() {
        this.onerror?.({});
      }
    };
  }

  get last() {
    return this.instances[this.instances.length - 1];
  }
}

/** BroadcastChannel among fake tabs: asynchronous, in order, never to the sender, silent once a tab is dead. */
export class BroadcastNet {
  constructor() {
    this.channels = new Set();
  }

  classFor(tab) {
    const net = this;
    return class {
      constructor(name) {
        this.name = name;
        this.onmessage = null;
        this.closed = false;
        net.channels.add(this);
      }
      postMessage(data) {
        if (this.closed || tab.dead) return;
        const copy = structuredClone(data);
        for (const other of net.channels) {
          if (other === this || other.name !== this.name) continue;
          setImmediate(() => {
            if (!other.closed && other.onmessage) other.onmessage({ data: structuredClone(copy) });
          });
        }
      }
      close() {
        this.closed = true;
        net.channels.delete(this);
      }
    };
  }
}

/** Web Locks (exclusive only), shared by the fake tabs; a dead tab's locks are released like a closed tab's. */
export class LockNet {
  constructor() {
    this.held = new Map();
    this.queues = new Map();
  }

  viewFor(tab) {
    return { request: (name, options, callback) => this.request(tab, name, options, callback) };
  }

  request(tab, name, options, callback) {
    if (typeof options === "function") {
      callback = options;
      options = {};
    }
    return new Promise((resolve, reject) => {
      const entry = { tab, callback, resolve, reject, granted: false };
      const signal = options.signal;
      if (signal?.aborted) {
        reject(new DOMException("aborted", "AbortError"));
        return;
      }
      signal?.addEventListener("abort", () => {
        if (entry.granted) return;
        this.remove(name, entry);
        reject(new DOMException("aborted", "AbortError"));
      });
      if (!this.queues.has(name)) this.queues.set(name, []);
      this.queues.get(name).push(entry);
      this.pump(name);
    });
  }

  remove(name, entry) {
    const queue = this.queues.get(name) ?? [];
    const index = queue.indexOf(entry);
    if (index >= 0) queue.splice(index, 1);
  }

  pump(name) {
    if (this.held.has(name)) return;
    const entry = (this.queues.get(name) ?? []).shift();
    if (!entry) return;
    entry.granted = true;
    this.held.set(name, entry);
    Promise.resolve()
      .then(() => entry.callback({ name, mode: "exclusive" }))
      .then(
        (value) => {
          this.release(name, entry);
          entry.resolve(value);
        },
        (error) => {
          this.release(name, entry);
          entry.reject(error);
        },
      );
  }

  release(name, entry) {
    if (this.held.get(name) !== entry) return;
    this.held.delete(name);
    this.pump(name);
  }

  dropTab(tab) {
    for (const [name, queue] of this.queues) this.queues.set(name, queue.filter((e) => e.tab !== tab));
    for (const [name, entry] of [...this.held]) if (entry.tab === tab) this.release(name, entry);
  }
}

/** A browser tab: its own platform view on the shared clock, server, channel network and locks. */
export function makeTab({ clock, server, net, locks, random = seeded(7), withLocks = true, name = "tab" }) {
  const tab = { name, dead: false, events: [], states: [], resets: [] };
  const Channel = net.classFor(tab);
  const channels = [];
  tab.env = {
    fetch: (url, init) => (tab.dead ? Promise.reject(new TypeError("tab closed")) : server.fetch(url, init, tab)),
    BroadcastChannel: class extends Channel {
      constructor(n) {
        super(n);
        channels.push(this);
      }
    },
    locks: withLocks ? locks.viewFor(tab) : null,
    setTimeout: (fn, ms) => clock.setTimeout(() => tab.dead || fn(), ms),
    clearTimeout: clock.clearTimeout,
    now: clock.now,
    random,
    window: null,
    document: null,
    baseURI: "https://app.test/",
    reportError: (error) => {
      throw error;
    },
  };
  /** The tab is killed: no goodbye, its locks released and its connections broken by the browser. */
  tab.crash = () => {
    tab.dead = true;
    for (const ch of channels) ch.close();
    locks.dropTab(tab);
    server.dropTab(tab);
  };
  tab.options = (extra = {}) => ({
    url: "https://hub.test/v1/events",
    getToken: () => "token",
    shared: true,
    env: tab.env,
    onEvent: (e) => tab.dead || tab.events.push(e.id),
    onReset: (info) => tab.dead || tab.resets.push(info),
    onStateChange: (s, info) => tab.dead || tab.states.push([s, info.role]),
    ...extra,
  });
  return tab;
}

/** A tiny EventTarget-ish stand-in for window/document. */
export class FakeTarget {
  constructor(props = {}) {
    Object.assign(this, props);
    this.listeners = new Map();
  }
  addEventListener(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
  }
  removeEventListener(type, fn) {
    this.listeners.get(type)?.delete(fn);
  }
  dispatch(type) {
    for (const fn of this.listeners.get(type) ?? []) fn({ type });
  }
}
