// The tidings admin dashboard: live counters, the event feed, deliveries, user lookup, a test publisher.
// Served at <hub>/dashboard/; every URL is resolved against this module's own location, so a hub mounted under a
// prefix works unchanged. The API it calls is docs/dashboard-api.md. Untrusted strings only ever go into
// textContent, never innerHTML.

import { connect } from "../v1/client.js";
import { Recent, audienceText, buildTestEvent, claimsOf, countsText, eventRate, formatCount, formatMs, formatTime, inboxState, outcomeRows, outcomeTone } from "./format.js";

const HUB = new URL("../", import.meta.url);
const api = (path) => new URL(path, HUB).href;
const TOKEN_KEY = "tidings.dashboard.token";
const FEED_LIMIT = 200;
const DELIVERY_LIMIT = 100;
const STATS_FALLBACK_MS = 5000; // poll /v1/admin/stats when the feed has sent none for this long
const OUTCOMES = ["delivered", "skipped", "retry_later", "dead_token", "credentials", "rejected"];

const $ = (id) => document.getElementById(id);

const app = {
  token: sessionStorage.getItem(TOKEN_KEY),
  stream: null,
  stats: null,
  statsAt: 0,
  feed: new Recent(FEED_LIMIT),
  held: [], // events that arrived while the feed was paused
  paused: false,
  deliveries: new Recent(DELIVERY_LIMIT),
  timers: [],
};

/** A DOM element: h("td", {class: "x"}, "text", child). Strings become text nodes. */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "title") el.title = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function pill(text, tone) {
  return h("span", { class: `pill ${tone}` }, text);
}

async function request(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${app.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(api(path), { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
  const data = await response.json().catch(() => null);
  if (response.status === 401) signOut("The hub refused this token (401): it is invalid or expired.");
  return { ok: response.ok, status: response.status, data };
}

function errorText(result) {
  const data = result.data ?? {};
  const field = data.field ? ` (${data.field})` : "";
  return `${result.status} ${data.error ?? ""}${field}: ${data.message ?? "request failed"}`;
}

// --- sign in / out ----------------------------------------------------------------------------------------------

async function showLogin(message = "") {
  $("app").hidden = true;
  $("login").hidden = false;
  $("sign-out").hidden = true;
  $("who").textContent = "";
  $("login-error").textContent = message;
  try {
    const response = await fetch(api("v1/dashboard/config"), { headers: { Accept: "application/json" } });
    const config = response.ok ? await response.json() : {};
    $("dev-login").hidden = !config.dev_login;
  } catch {
    $("dev-login").hidden = true;
  }
}

function signIn(token) {
  const claims = claimsOf(token);
  if (!claims) {
    $("login-error").textContent = "That is not a JWT (three base64url parts separated by dots).";
    return;
  }
  app.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("login").hidden = true;
  $("app").hidden = false;
  $("sign-out").hidden = false;
  const roles = Array.isArray(claims.roles) ? ` (${claims.roles.join(", ")})` : "";
  $("who").textContent = `${claims.sub ?? "?"}${roles}`;
  start(claims);
}

function signOut(message = "") {
  for (const timer of app.timers) clearInterval(timer);
  app.timers = [];
  app.stream?.close();
  app.stream = null;
  app.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  setStreamState("offline", "muted");
  showLogin(message);
}

async function devLogin() {
  const response = await fetch(api("v1/admin/dev-token"), { method: "POST", headers: { Accept: "application/json" } });
  const data = await response.json().catch(() => null);
  if (!response.ok || !data?.token) {
    $("login-error").textContent = `Development login failed (${response.status}).`;
    return;
  }
  signIn(data.token);
}

// --- live data --------------------------------------------------------------------------------------------------

const STATE_TONE = { open: "good", connecting: "warn", waiting: "warn", unauthorized: "bad", forbidden: "bad", closed: "muted" };

function setStreamState(text, tone) {
  const el = $("stream-state");
  el.textContent = text;
  el.className = `pill ${tone}`;
}

function start(claims) {
  app.stream = connect({
    url: api("v1/admin/feed"),
    getToken: () => app.token, // a pasted token cannot be refreshed: a 401 signs out
    shared: true, // every dashboard tab of this admin shares one connection (the admin limit is one per user)
    sharedKey: `dashboard:${HUB.href}:${claims.sub ?? ""}`,
    onEvent: onFeedEvent,
    onStateChange: (state, info) => {
      const label = state === "waiting" ? `reconnecting in ${Math.ceil((info.delay ?? 0) / 1000)} s` : state;
      setStreamState(label, STATE_TONE[state] ?? "muted");
      if (state === "open") loadDeliveries(); // the feed has no resume: reload what it may have missed
      if (state === "unauthorized") signOut("The hub refused this token (401): it is invalid or expired.");
      if (state === "forbidden") signOut("This token lacks the role admin (403).");
    },
  });
  loadStats();
  loadHealth();
  app.timers.push(
    setInterval(() => {
      if (Date.now() - app.statsAt > STATS_FALLBACK_MS) loadStats();
    }, STATS_FALLBACK_MS),
    setInterval(loadHealth, 10_000),
  );
}

function onFeedEvent(event) {
  if (event.type === "published") addFeed(event.data);
  else if (event.type === "delivery") addDelivery(event.data);
  else if (event.type === "stats") showStats(event.data);
}

async function loadStats() {
  const result = await request("v1/admin/stats");
  if (result.ok) showStats(result.data);
}

async function loadHealth() {
  try {
    const response = await fetch(api("readyz"), { headers: { Accept: "application/json" }, cache: "no-store" });
    const data = await response.json().catch(() => ({}));
    const failing = Object.entries(data.checks ?? {})
      .filter(([, ok]) => !ok)
      .map(([name]) => name);
    const el = $("health");
    el.textContent = response.ok ? "ready" : `not ready: ${failing.join(", ") || response.status}`;
    el.className = `pill ${response.ok ? "good" : "bad"}`;
  } catch {
    $("health").textContent = "unreachable";
    $("health").className = "pill bad";
  }
}

function showStats(stats) {
  const rate = eventRate(app.stats, stats);
  app.stats = stats;
  app.statsAt = Date.now();
  const roles = Object.entries(stats.connections?.by_role ?? {})
    .sort()
    .map(([role, n]) => `${role} ${n}`)
    .join(" · ");
  $("c-connections").textContent = formatCount(stats.connections?.total);
  $("c-connections-roles").textContent = roles || "no streams";
  if (rate !== null) $("c-rate").textContent = rate < 10 ? rate.toFixed(1) : formatCount(Math.round(rate));
  $("c-published").textContent = `${formatCount(stats.events?.published_total)} published · ${formatCount(stats.events?.delivered_sse_total)} streamed`;
  $("c-queue").textContent = formatCount(stats.push?.queue_depth);
  const devices = Object.entries(stats.devices?.active_by_provider ?? {})
    .map(([provider, n]) => `${provider} ${n}`)
    .join(" · ");
  $("c-devices").textContent = devices ? `devices: ${devices}` : "";
  $("c-latency").textContent = formatMs(stats.events?.latency_p50_ms);
  $("c-latency-detail").textContent = stats.events?.latency_p99_ms !== undefined ? `p50 · p99 ${formatMs(stats.events.latency_p99_ms)}` : "";
  renderOutcomes(stats.push ?? {});
}

function renderOutcomes(push) {
  const body = $("outcomes").tBodies[0];
  const rows = outcomeRows(push.by_provider).map(([provider, counts, total]) => {
    const configured = push.configured?.[provider];
    const name = h("td", {}, provider, configured === false ? h("span", { class: "muted" }, " (not configured)") : "");
    const cells = OUTCOMES.map((outcome) => h("td", { class: counts[outcome] ? outcomeTone(outcome) : "muted" }, formatCount(counts[outcome] ?? 0)));
    return h("tr", {}, name, ...cells, h("td", {}, formatCount(total)));
  });
  body.replaceChildren(...rows);
  if (!rows.length) body.append(h("tr", {}, h("td", { colspan: "8", class: "muted" }, "No push attempts yet.")));
}

// --- the feed -----------------------------------------------------------------------------------------------------

function feedRow(item, fresh) {
  const push = item.push ? pill(item.push, item.push === "alert" ? "warn" : "muted") : "";
  const recipients = item.recipients !== undefined ? h("span", { class: "muted", title: "streams on this process" }, ` → ${item.recipients}`) : "";
  return h(
    "li",
    { class: fresh ? "fresh" : undefined, "data-search": `${item.type} ${(item.to?.users ?? []).join(" ")}`.toLowerCase() },
    h("span", { class: "time", title: item.occurred_at }, formatTime(item.occurred_at)),
    h("span", { class: "type", title: item.id }, item.type),
    h("span", { class: "to" }, audienceText(item.to), recipients),
    push,
  );
}

function matchesFilter(li) {
  const filter = $("feed-filter").value.trim().toLowerCase();
  return !filter || li.dataset.search.includes(filter);
}

function addFeed(item) {
  if (app.paused) {
    app.held.push(item);
    $("feed-paused").textContent = `Paused · ${app.held.length} new`;
    return;
  }
  app.feed.add(item);
  const list = $("feed");
  const li = feedRow(item, true);
  li.hidden = !matchesFilter(li);
  list.prepend(li);
  while (list.children.length > FEED_LIMIT) list.lastElementChild.remove();
  $("feed-empty").hidden = true;
}

function togglePause() {
  app.paused = !app.paused;
  $("feed-pause").textContent = app.paused ? "Resume" : "Pause";
  $("feed-paused").hidden = !app.paused;
  $("feed-paused").textContent = "Paused";
  if (!app.paused) {
    const held = app.held;
    app.held = [];
    for (const item of held) addFeed(item);
  }
}

function applyFilter() {
  for (const li of $("feed").children) li.hidden = !matchesFilter(li);
}

// --- deliveries -------------------------------------------------------------------------------------------------

function deliveryRow(d, { withUser = true } = {}) {
  return h(
    "tr",
    {},
    h("td", { title: d.created_at }, formatTime(d.created_at)),
    h("td", { class: "mono", title: d.event_id }, d.event_id),
    withUser ? h("td", {}, d.user_id ?? "–") : null,
    h("td", {}, d.provider),
    h("td", {}, pill(d.outcome.replace("_", " "), outcomeTone(d.outcome))),
    h("td", { class: "reason" }, [d.reason, d.status ? `(${d.status})` : ""].filter(Boolean).join(" ")),
    withUser ? h("td", {}, d.attempt) : null,
    withUser ? h("td", {}, formatMs(d.latency_ms)) : null,
  );
}

function renderDeliveries() {
  $("deliveries").tBodies[0].replaceChildren(...app.deliveries.items.map((d) => deliveryRow(d)));
  $("deliveries-empty").hidden = app.deliveries.items.length > 0;
}

function addDelivery(d) {
  app.deliveries.add(d);
  renderDeliveries();
}

async function loadDeliveries() {
  const result = await request(`v1/admin/deliveries?limit=${DELIVERY_LIMIT}`);
  if (!result.ok) return;
  app.deliveries.replace(result.data.deliveries ?? []);
  renderDeliveries();
}

// --- user lookup --------------------------------------------------------------------------------------------------

async function lookup(userId, roles) {
  $("lookup-error").textContent = "";
  const q = encodeURIComponent(userId);
  const [presence, devices, deliveries, inbox] = await Promise.all([
    request(`v1/admin/presence?user_id=${q}`),
    request(`v1/admin/devices?user_id=${q}&limit=100`),
    request(`v1/admin/deliveries?user_id=${q}&limit=50`),
    request(`v1/admin/inbox?user_id=${q}&limit=20${roles ? `&roles=${encodeURIComponent(roles)}` : ""}`),
  ]);
  const failed = [presence, devices, deliveries, inbox].find((r) => !r.ok && r.status !== 404);
  if (failed) $("lookup-error").textContent = errorText(failed);
  $("lookup").hidden = false;

  const p = presence.ok ? presence.data : null;
  const presenceEl = $("lookup-presence");
  if (!p) presenceEl.replaceChildren(h("span", { class: "muted" }, "unknown"));
  else if (!p.online) presenceEl.replaceChildren(pill("offline", "muted"), p.last_seen ? h("span", { class: "muted" }, ` last seen ${formatTime(p.last_seen)}`) : "");
  else {
    const connections = p.connections.map((c) => `${c.endpoint}${c.topics?.length ? ` [${c.topics.join(", ")}]` : ""} since ${formatTime(c.opened_at)} from ${c.ip}`);
    const elsewhere = p.connections_total - p.connections.length;
    presenceEl.replaceChildren(pill(`online · ${p.connections_total}`, "good"), " ", connections.join("; "), elsewhere > 0 ? h("span", { class: "muted" }, ` (+${elsewhere} on other processes)`) : "");
  }

  const deviceRows = (devices.ok ? devices.data.devices : []).map((d) =>
    h(
      "tr",
      {},
      h("td", {}, d.provider),
      h("td", {}, d.platform),
      h("td", {}, d.name ?? "–"),
      h("td", {}, d.active ? pill("active", "good") : pill(d.disabled_reason ?? "disabled", "bad")),
      h("td", {}, formatTime(d.last_seen_at)),
      h("td", {}, formatTime(d.last_used_at) || "–"),
    ),
  );
  $("lookup-devices").tBodies[0].replaceChildren(...(deviceRows.length ? deviceRows : [h("tr", {}, h("td", { colspan: "6", class: "muted" }, "No devices."))]));
  const deliveryRows = (deliveries.ok ? deliveries.data.deliveries : []).map((d) => deliveryRow(d, { withUser: false }));
  $("lookup-deliveries").tBodies[0].replaceChildren(...(deliveryRows.length ? deliveryRows : [h("tr", {}, h("td", { colspan: "5", class: "muted" }, "No deliveries."))]));
  $("lookup-inbox-counts").textContent = inbox.ok ? countsText(inbox.data.counts) : "";
  const inboxRows = (inbox.ok ? inbox.data.items : []).map((item) => {
    const [state, tone] = inboxState(item);
    return h(
      "tr",
      {},
      h("td", {}, formatTime(item.occurred_at)),
      h("td", { title: item.body }, item.title || "–"),
      h("td", {}, item.category ?? "–"),
      h("td", {}, item.type),
      h("td", {}, pill(state, tone), item.critical ? " critical" : ""),
    );
  });
  $("lookup-inbox").tBodies[0].replaceChildren(...(inboxRows.length ? inboxRows : [h("tr", {}, h("td", { colspan: "5", class: "muted" }, "No inbox items."))]));
}

// --- test publisher -----------------------------------------------------------------------------------------------

async function publish(form) {
  const values = Object.fromEntries(new FormData(form));
  values.broadcast = form.elements.broadcast.checked;
  const built = buildTestEvent(values);
  const out = $("publish-result");
  out.className = "note";
  if (built.errors) {
    out.className = "error";
    out.textContent = Object.entries(built.errors)
      .map(([field, message]) => `${field}: ${message}`)
      .join(" · ");
    return;
  }
  const result = await request("v1/admin/test-event", { method: "POST", body: built.body });
  if (result.ok) out.textContent = `Published ${result.data.ids.join(", ")}`;
  else {
    out.className = "error";
    out.textContent = errorText(result);
  }
}

// --- wiring -------------------------------------------------------------------------------------------------------

function wire() {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn($("token-input").value.trim());
    $("token-input").value = "";
  });
  $("dev-login").addEventListener("click", devLogin);
  $("sign-out").addEventListener("click", () => signOut());
  $("feed-pause").addEventListener("click", togglePause);
  $("feed-filter").addEventListener("input", applyFilter);
  $("deliveries-reload").addEventListener("click", loadDeliveries);
  $("lookup-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const user = $("lookup-user").value.trim();
    const roles = $("lookup-roles").value.split(/[\s,]+/).filter(Boolean).join(",");
    if (user) lookup(user, roles);
  });
  $("publish-form").addEventListener("submit", (e) => {
    e.preventDefault();
    publish(e.target);
  });
  if (app.token) signIn(app.token);
  else showLogin();
}

wire();
