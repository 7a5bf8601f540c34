// edgevision fleet: the dashboard page. Plain JavaScript, no build step, nothing loaded from elsewhere.
// Every piece of data is put in the page as text (textContent, attributes), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const EVERY_MS = 2000;
let session = { auth: false, can_read: false, signed_in: false, csrf: null };
let eventLimit = 100;
let timer = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const clock = (seconds) => (seconds ? new Date(seconds * 1000).toLocaleString() : "never");

function ago(seconds) {
  if (!seconds) return "not heard live yet";
  const s = Math.max(0, Date.now() / 1000 - seconds);
  if (s < 60) return `last seen ${Math.round(s)} s ago`;
  if (s < 3600) return `last seen ${Math.round(s / 60)} min ago`;
  return `last seen ${clock(seconds)}`;
}

function status(text) {
  $("status").textContent = text || "";
  $("status").hidden = !text;
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  const reply = await fetch(path, {
    method, headers, credentials: "same-origin", cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = (reply.headers.get("content-type") || "").includes("json") ? await reply.json() : null;
  if (!reply.ok) {
    const error = new Error(data && typeof data.detail === "string" ? data.detail : `HTTP ${reply.status}`);
    error.status = reply.status;
    throw error;
  }
  return data;
}

// ---------------------------------------------------------------- watchers
function chips(camera) {
  const list = [];
  for (const [zone, n] of Object.entries(camera.occupancy)) list.push(el("span", { class: "chip zone" }, `${zone}: ${n}`));
  for (const [line, c] of Object.entries(camera.lines)) {
    list.push(el("span", { class: "chip line" }, `${line}: ${c.in ?? 0} in, ${c.out ?? 0} out`));
  }
  list.push(el("span", { class: "chip" }, `${camera.events} event${camera.events === 1 ? "" : "s"}`));
  return el("div", { class: "chips" }, ...list);
}

function cameraTile(watcher, camera) {
  const image = camera.snapshot
    ? el("img", { src: `${camera.snapshot}?t=${camera.snapshot_at}`, alt: `latest event snapshot of ${watcher.name}/${camera.name}` })
    : el("div", { class: "no-snapshot muted" }, "no snapshot yet");
  return el(
    "figure",
    { class: "tile camera", "data-watcher": watcher.name, "data-camera": camera.name },
    el("div", { class: "frame" }, image),
    el("figcaption", {}, el("span", { class: "title" }, camera.name), chips(camera)),
  );
}

function storageBadge(storage) {
  // a watcher whose store refuses writes (a full disk) says so; otherwise its free space, quietly
  if (!storage) return null;
  if (!storage.ok) return el("span", { class: "badge storage-problem", title: storage.problem || "" }, "storage full");
  return el("span", { class: "muted storage-free" }, `${storage.free_gb} GB free`);
}

function watcherCard(watcher) {
  const state = el("span", { class: `badge ${watcher.state}` }, watcher.state);
  const head = el(
    "div",
    { class: "watcher-head" },
    el("h3", {}, watcher.name),
    state,
    storageBadge(watcher.storage),
    el("span", { class: "muted" }, `${ago(watcher.last_seen)} · ${watcher.events} event${watcher.events === 1 ? "" : "s"}`),
  );
  const tiles = el("div", { class: "tiles" }, ...watcher.cameras.map((c) => cameraTile(watcher, c)));
  return el("section", { class: "watcher card", "data-watcher": watcher.name, "data-state": watcher.state }, head, tiles);
}

function showBroker(broker) {
  const badge = $("broker");
  const connected = broker.state === "connected";
  badge.textContent = connected ? `broker ${broker.address}` : broker.state === "connecting" ? "connecting…" : "broker unreachable";
  badge.className = `badge ${connected ? "online" : "offline"}`;
  badge.title = broker.detail || "";
  status(connected || !broker.detail ? "" : broker.detail);
}

function fillSelect(select, names) {
  const chosen = select.value;
  const wanted = ["", ...names];
  const have = [...select.options].map((o) => o.value);
  if (have.join("\n") === wanted.join("\n")) return;
  select.replaceChildren(...wanted.map((n) => el("option", { value: n }, n || "all")));
  select.value = wanted.includes(chosen) ? chosen : "";
}

function showFleet(fleet) {
  showBroker(fleet.broker);
  $("watchers").replaceChildren(...fleet.watchers.map(watcherCard));
  $("watchers-none").hidden = fleet.watchers.length > 0;
  fillSelect($("event-watcher"), fleet.watchers.map((w) => w.name));
  const cameras = new Set(fleet.watchers.flatMap((w) => w.cameras.map((c) => c.name)));
  fillSelect($("event-camera"), [...cameras].sort());
}

// ---------------------------------------------------------------- events
function eventItem(event) {
  const how = event.direction ? ` (${event.direction})` : event.dwell_seconds ? ` (${Math.round(event.dwell_seconds)} s)` : "";
  const what = `${event.type} ${event.zone || ""}${how}`.trim();
  const label = [event.label, typeof event.score === "number" ? `${Math.round(event.score * 100)}%` : null]
    .filter((v) => v)
    .join(" ");
  return el(
    "li",
    { class: "event", "data-id": event.id },
    el("span", { class: "what" }, what),
    el("span", { class: "meta where" }, `${event.watcher} / ${event.camera}`),
    el("span", { class: "meta" }, clock(event.time)),
    label ? el("span", { class: "meta" }, label) : null,
  );
}

async function loadEvents() {
  const query = new URLSearchParams({ limit: String(eventLimit) });
  for (const [key, id] of [["watcher", "event-watcher"], ["camera", "event-camera"], ["type", "event-type"]]) {
    if ($(id).value) query.set(key, $(id).value);
  }
  const events = await api(`/api/events?${query}`);
  $("event-list").replaceChildren(...events.map(eventItem));
  $("event-none").hidden = events.length > 0;
  $("event-more").hidden = events.length < eventLimit || eventLimit >= 1000;
}

// ---------------------------------------------------------------- polling, login
async function tick() {
  clearTimeout(timer);
  try {
    showFleet(await api("/api/fleet"));
    await loadEvents();
  } catch (exc) {
    if (exc.status === 401) return showLogin();
    status(`Could not load: ${exc.message}`);
  }
  timer = setTimeout(tick, EVERY_MS);
}

function showLogin() {
  $("fleet").hidden = true;
  $("login").hidden = false;
  $("secret").focus();
}

async function login(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  try {
    await api("/api/login", { method: "POST", body: { secret: $("secret").value } });
  } catch (exc) {
    $("login-error").textContent = exc.message;
    return;
  }
  $("secret").value = "";
  $("login").hidden = true;
  await start();
}

async function logout() {
  await api("/api/logout", { method: "POST" }).catch(() => {});
  location.reload();
}

async function start() {
  session = await api("/api/session");
  $("who-text").textContent = !session.auth ? "read-only (no login configured)" : session.signed_in ? "signed in" : "";
  $("logout").hidden = !(session.auth && session.signed_in);
  if (!session.can_read) return showLogin();
  $("fleet").hidden = false;
  await tick();
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  for (const id of ["event-watcher", "event-camera", "event-type"]) $(id).addEventListener("change", tick);
  $("event-more").addEventListener("click", () => {
    eventLimit = Math.min(1000, eventLimit * 2);
    tick();
  });
  start().catch((exc) => status(`Could not start: ${exc.message}`));
});
