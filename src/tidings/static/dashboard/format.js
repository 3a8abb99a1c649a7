// The dashboard's pure helpers: formatting, rates from stats snapshots, the test-event form's validation.
// No DOM and no imports, so node's test runner checks them (clients/js/test/dashboard.test.js).

/** The claims of a JWT (unverified: a display hint only, the server decides), or null. */
export function claimsOf(token) {
  const part = typeof token === "string" ? token.split(".")[1] : undefined;
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((part.length + 3) % 4);
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

/** "07:51:22" for today, "22 Nov 07:51" otherwise (local time); "" for nothing. */
export function formatTime(iso, now = new Date()) {
  if (!iso) return "";
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return String(iso);
  const pad = (n) => String(n).padStart(2, "0");
  const time = `${pad(at.getHours())}:${pad(at.getMinutes())}:${pad(at.getSeconds())}`;
  if (at.toDateString() === now.toDateString()) return time;
  const month = at.toLocaleString("en", { month: "short" });
  return `${at.getDate()} ${month} ${time.slice(0, 5)}`;
}

export function formatMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}

export function formatCount(n) {
  if (n === null || n === undefined) return "–";
  if (n < 10_000) return String(n);
  if (n < 1_000_000) return `${(n / 1000).toFixed(1)}k`;
  return `${(n / 1_000_000).toFixed(1)}M`;
}

/** Events per second between two stats snapshots; null when unknown (first snapshot, server restarted). */
export function eventRate(previous, next) {
  if (!previous || !next) return null;
  const dt = (Date.parse(next.at) - Date.parse(previous.at)) / 1000;
  const dn = (next.events?.published_total ?? 0) - (previous.events?.published_total ?? 0);
  if (!(dt > 0) || dn < 0) return null;
  return dn / dt;
}

/** A short audience description: "alice, bob +3 · role admin · topic orders" or "everyone". */
export function audienceText(to) {
  if (!to) return "";
  if (to.broadcast) return "everyone";
  const parts = [];
  const users = to.users ?? [];
  if (users.length) {
    const extra = (to.users_total ?? users.length) - Math.min(users.length, 3);
    parts.push(users.slice(0, 3).join(", ") + (extra > 0 ? ` +${extra}` : ""));
  }
  if (to.roles?.length) parts.push(`role ${to.roles.join(", ")}`);
  if (to.topics?.length) parts.push(`topic ${to.topics.join(", ")}`);
  return parts.join(" · ");
}

const OUTCOME_TONE = {
  delivered: "good",
  skipped: "muted",
  retry_later: "warn",
  dead_token: "bad",
  credentials: "bad",
  rejected: "bad",
};

/** The colour class of a push outcome. */
export function outcomeTone(outcome) {
  return OUTCOME_TONE[outcome] ?? "muted";
}

/** Outcome counters of every provider as rows [provider, {outcome: n}, total], providers sorted. */
export function outcomeRows(byProvider) {
  return Object.keys(byProvider ?? {})
    .sort()
    .map((provider) => {
      const counts = byProvider[provider] ?? {};
      const total = Object.values(counts).reduce((a, b) => a + b, 0);
      return [provider, counts, total];
    });
}

/** An inbox item's state for its reader, as [label, tone]: archived, read, seen, or unread (the dot). */
export function inboxState(item) {
  if (item.archived) return ["archived", "muted"];
  if (item.read) return ["read", "muted"];
  if (item.seen) return ["seen", "warn"];
  return ["unread", "good"];
}

/** "3 unread · 5 unseen · orders 2, chat 1" */
export function countsText(counts) {
  if (!counts) return "";
  const categories = Object.entries(counts.by_category ?? {})
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, n]) => `${name} ${n}`);
  return [`${counts.unread} unread`, `${counts.unseen} unseen`, ...(categories.length ? [categories.join(", ")] : [])].join(" · ");
}

const NAME = /^[^\s,\x00-\x1f\x7f]{1,256}$/; // the hub's NAME_PATTERN (events.py)
const TYPE = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/; // the hub's TYPE_PATTERN

function names(text) {
  return [...new Set(String(text ?? "").split(/[\s,]+/).filter(Boolean))];
}

/**
 * The test-event form's values → a publish body, or {errors: {field: message}}. The server validates again;
 * this only catches what a person mistypes.
 */
export function buildTestEvent(form) {
  const errors = {};
  const type = String(form.type ?? "").trim();
  if (!TYPE.test(type) || type.length > 128) errors.type = "a dotted lowercase name, e.g. dashboard.test";
  let data = {};
  const rawData = String(form.data ?? "").trim();
  if (rawData) {
    try {
      data = JSON.parse(rawData);
      if (!data || typeof data !== "object" || Array.isArray(data)) errors.data = "a JSON object";
    } catch (error) {
      errors.data = `not JSON: ${error.message}`;
    }
  }
  const to = {};
  for (const key of ["users", "roles", "topics"]) {
    const list = names(form[key]);
    const bad = list.find((n) => !NAME.test(n));
    if (bad) errors[key] = `invalid name ${JSON.stringify(bad)}`;
    if (list.length) to[key] = list;
  }
  if (form.broadcast) to.broadcast = true;
  if (!Object.keys(to).length) errors.to = "choose users, roles, topics or everyone";
  const body = { type, data, to };
  const mode = form.push ?? "none";
  if (mode === "silent") body.push = "silent";
  else if (mode === "alert") {
    const title = String(form.title ?? "").trim();
    const text = String(form.body ?? "").trim();
    if (!title && !text) errors.title = "an alert needs a title or a body";
    body.push = { mode: "alert", ...(title ? { title } : {}), ...(text ? { body: text } : {}) };
  }
  return Object.keys(errors).length ? { errors } : { body };
}

/** Keeps the newest `limit` items, newest first. */
export class Recent {
  constructor(limit) {
    this.limit = limit;
    this.items = [];
  }

  /** Adds an item; returns the one that fell off the end, if any. */
  add(item) {
    this.items.unshift(item);
    return this.items.length > this.limit ? this.items.pop() : undefined;
  }

  replace(items) {
    this.items = items.slice(0, this.limit);
  }
}
