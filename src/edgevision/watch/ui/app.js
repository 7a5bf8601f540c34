// edgevision watch: the page. Plain JavaScript, no build step, nothing loaded from elsewhere.
// Every piece of data is put in the page as text (textContent, attributes), never as HTML.
"use strict";

const EV = (window.EV = {
  session: { auth: false, signed_in: false, can_read: false, can_write: false, csrf: null },
  cameras: [], // the last /api/cameras
  geometry: {}, // camera -> {zones, lines}, as running
  views: {}, // name -> {show(), hide()}
  current: null,
});

// ---------------------------------------------------------------- DOM helpers
const SVG_NS = "http://www.w3.org/2000/svg";

EV.el = function (tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
};

EV.svg = function (tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  if (text !== undefined) node.textContent = String(text);
  return node;
};

function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "class") node.setAttribute("class", value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
}

EV.$ = (id) => document.getElementById(id);

let statusTimer = null;

// A message above the page: an error stays until the next good answer, a success goes after 6 s.
EV.status = function (text, ok = false) {
  const bar = EV.$("status");
  bar.textContent = text || "";
  bar.hidden = !text;
  bar.classList.toggle("ok", ok);
  clearTimeout(statusTimer);
  if (ok) statusTimer = setTimeout(() => EV.status(""), 6000);
};

EV.time = (seconds) => new Date(seconds * 1000).toLocaleString();

// ---------------------------------------------------------------- the API
class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }
}
EV.ApiError = ApiError;

EV.api = async function (path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && EV.session.csrf) headers["X-CSRF-Token"] = EV.session.csrf;
  const reply = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  const data = (reply.headers.get("content-type") || "").includes("json") ? await reply.json() : null;
  if (!reply.ok) {
    if (reply.status === 401 && path !== "/api/login") showLogin();
    throw new ApiError(reply.status, data && data.detail !== undefined ? data.detail : reply.statusText);
  }
  return data;
};

// ---------------------------------------------------------------- session and login
async function loadSession() {
  EV.session = await EV.api("/api/session");
  const who = EV.$("who-text");
  if (!EV.session.auth) who.textContent = "read-only (no login configured)";
  else who.textContent = EV.session.signed_in ? "signed in" : "";
  EV.$("logout").hidden = !(EV.session.auth && EV.session.signed_in);
}

function showLogin() {
  for (const view of document.querySelectorAll(".view")) view.hidden = true;
  EV.$("login").hidden = false;
  EV.$("nav").hidden = true;
  EV.$("secret").focus();
}

async function login(event) {
  event.preventDefault();
  const error = EV.$("login-error");
  error.textContent = "";
  try {
    await EV.api("/api/login", { method: "POST", body: { secret: EV.$("secret").value } });
  } catch (exc) {
    error.textContent = exc.message;
    return;
  }
  EV.$("secret").value = "";
  EV.$("login").hidden = true;
  EV.$("nav").hidden = false;
  await start();
}

async function logout() {
  await EV.api("/api/logout", { method: "POST" }).catch(() => {});
  location.hash = "#live";
  location.reload();
}

// ---------------------------------------------------------------- geometry drawing (tiles and editor)
EV.drawGeometry = function (svg, geometry, width, height) {
  const scale = width / 100; // labels and strokes follow the frame's size
  for (const [name, points] of Object.entries(geometry.zones || {})) {
    const pixels = points.map(([x, y]) => `${x * width},${y * height}`).join(" ");
    svg.append(EV.svg("polygon", { points: pixels, class: "zone", "stroke-width": scale * 0.5, "data-name": name }));
    const [x, y] = points[0];
    svg.append(EV.svg("text", { x: x * width + scale, y: y * height + 4 * scale, "font-size": 2.6 * scale }, name));
  }
  for (const [name, line] of Object.entries(geometry.lines || {})) {
    EV.drawLine(svg, name, line, width, height, {});
  }
};

EV.drawLine = function (svg, name, line, width, height, { selected = false } = {}) {
  const scale = width / 100;
  const [[x1, y1], [x2, y2]] = line.points.map(([x, y]) => [x * width, y * height]);
  const css = selected ? "line selected" : "line";
  svg.append(EV.svg("line", { x1, y1, x2, y2, class: css, "stroke-width": scale * 0.6, "data-name": name }));
  // the "in" side: left of the line as seen walking from its first point to its second
  const length = Math.hypot(x2 - x1, y2 - y1) || 1;
  const [nx, ny] = [(y2 - y1) / length, -(x2 - x1) / length];
  const [mx, my] = [(x1 + x2) / 2, (y1 + y2) / 2];
  const size = 2.5 * scale;
  const tip = [mx + nx * size * 2, my + ny * size * 2];
  const base = [
    [mx + (-ny * size) / 1.5, my + (nx * size) / 1.5],
    [mx - (-ny * size) / 1.5, my - (nx * size) / 1.5],
  ];
  if (line.direction !== "out") {
    svg.append(EV.svg("polygon", { points: [tip, ...base].map((p) => p.join(",")).join(" "), class: "arrow" }));
  }
  if (line.direction !== "in") {
    const back = [mx - nx * size * 2, my - ny * size * 2];
    svg.append(EV.svg("polygon", { points: [back, ...base].map((p) => p.join(",")).join(" "), class: "arrow" }));
  }
  svg.append(EV.svg("text", { x: x1 + scale, y: y1 + 4 * scale, "font-size": 2.6 * scale }, name));
};

// ---------------------------------------------------------------- live tiles
const tiles = new Map(); // camera -> {figure, img, svg, caption parts, timer}

function tileFor(name) {
  if (tiles.has(name)) return tiles.get(name);
  const img = EV.el("img", { alt: `${name}: latest frame` });
  const svg = EV.svg("svg", { "aria-hidden": "true" });
  const frame = EV.el("div", { class: "frame" }, img, svg);
  const badge = EV.el("span", { class: "badge" });
  const stats = EV.el("div", { class: "stats" });
  const chips = EV.el("div", { class: "chips" });
  const figure = EV.el(
    "figure",
    { class: "tile", "data-camera": name },
    frame,
    EV.el("figcaption", {}, EV.el("div", { class: "title" }, EV.el("span", { text: name }), badge), stats, chips),
  );
  const tile = { name, figure, frame, img, svg, badge, stats, chips, timer: null, size: null };
  img.addEventListener("load", () => {
    const size = [img.naturalWidth, img.naturalHeight];
    if (!tile.size || tile.size[0] !== size[0] || tile.size[1] !== size[1]) {
      tile.size = size;
      frame.style.aspectRatio = `${size[0]} / ${size[1]}`;
      drawTileGeometry(tile);
    }
    tile.timer = setTimeout(() => refreshImage(tile), 1000);
  });
  img.addEventListener("error", () => {
    tile.timer = setTimeout(() => refreshImage(tile), 2000);
  });
  tiles.set(name, tile);
  EV.$("tiles").append(figure);
  return tile;
}

function refreshImage(tile) {
  clearTimeout(tile.timer);
  if (EV.current !== "live" || document.hidden) {
    tile.timer = null;
    return;
  }
  tile.img.src = `/api/cameras/${encodeURIComponent(tile.name)}/latest.jpg?t=${Date.now()}`;
}

function drawTileGeometry(tile) {
  if (!tile.size) return;
  const [width, height] = tile.size;
  tile.svg.replaceChildren();
  tile.svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  tile.svg.setAttribute("preserveAspectRatio", "none");
  EV.drawGeometry(tile.svg, EV.geometry[tile.name] || {}, width, height);
}

function updateTile(camera) {
  const tile = tileFor(camera.name);
  tile.badge.textContent = camera.state;
  tile.badge.className = `badge ${camera.state}`;
  const p50 = camera.inference_ms_p50 === null ? "–" : `${camera.inference_ms_p50} ms`;
  tile.stats.textContent = `${camera.fps} fps · model ${p50} · motion ${Math.round(camera.motion_fraction * 100)}%`;
  const chips = [];
  for (const [zone, n] of Object.entries(camera.occupancy || {})) {
    chips.push(EV.el("span", { class: "chip zone", title: `tracks now in zone ${zone}` }, `${zone}: ${n} inside`));
  }
  for (const [line, counts] of Object.entries(camera.line_counts || {})) {
    const text = `${line}: ${counts.in} in · ${counts.out} out`;
    chips.push(EV.el("span", { class: "chip line", title: `crossings of line ${line}` }, text));
  }
  tile.chips.replaceChildren(...chips);
  if (!tile.timer) refreshImage(tile);
}

async function loadCameras() {
  EV.cameras = await EV.api("/api/cameras");
  const names = EV.cameras.map((c) => c.name);
  for (const name of names) {
    if (!(name in EV.geometry)) EV.geometry[name] = await EV.api(`/api/cameras/${encodeURIComponent(name)}/geometry`);
  }
  fillCameraSelect(EV.$("event-camera"), names, true);
  fillCameraSelect(EV.$("editor-camera"), names, false);
  return EV.cameras;
}

function fillCameraSelect(select, names, withAll) {
  const have = [...select.options].map((o) => o.value).filter((v) => v);
  if (have.join("\n") === names.join("\n")) return;
  const chosen = select.value;
  const options = names.map((name) => EV.el("option", { value: name }, name));
  select.replaceChildren(...(withAll ? [EV.el("option", { value: "" }, "all")] : []), ...options);
  if (names.includes(chosen) || (withAll && chosen === "")) select.value = chosen;
}

EV.reloadGeometry = async function () {
  EV.geometry = {};
  await loadCameras();
  for (const tile of tiles.values()) drawTileGeometry(tile);
};

EV.views.live = {
  async refresh() {
    const cameras = await loadCameras();
    const names = new Set(cameras.map((c) => c.name));
    for (const [name, tile] of tiles) {
      if (!names.has(name)) {
        tile.figure.remove();
        tiles.delete(name);
      }
    }
    cameras.forEach(updateTile);
  },
  every: 2000,
};

// ---------------------------------------------------------------- events
let eventLimit = 60;
let shownEvents = "";

function eventItem(event) {
  const how = event.direction ? ` (${event.direction})` : event.dwell_seconds ? ` (${event.dwell_seconds.toFixed(0)} s)` : "";
  const what = `${event.type} ${event.zone || ""}${how}`.trim();
  const details = [event.label, event.score === null ? null : `${Math.round(event.score * 100)}%`]
    .filter((v) => v !== null && v !== undefined && v !== "")
    .join(" ");
  const thumb = event.snapshot
    ? EV.el("img", { src: event.snapshot, alt: `snapshot of event ${event.id}`, loading: "lazy" })
    : EV.el("img", { alt: "no snapshot" });
  const button = EV.el(
    "button",
    { type: "button", class: "event", "data-id": event.id, onclick: () => openEvent(event) },
    thumb,
    EV.el(
      "span",
      { class: "text" },
      EV.el("span", { class: "what" }, what),
      EV.el("span", { class: "meta" }, `${event.camera} · ${EV.time(event.time)}`),
      EV.el("span", { class: "meta label" }, details, event.track_id === null ? "" : ` · track ${event.track_id}`),
      event.clip ? EV.el("span", { class: "has-clip" }, "\u25B6 clip") : null,
    ),
  );
  return EV.el("li", {}, button);
}

function openEvent(event) {
  const dialog = EV.$("event-dialog");
  EV.$("dialog-title").textContent = `${event.type} ${event.zone || ""} · ${event.camera}`;
  const video = EV.$("dialog-video");
  const note = EV.$("dialog-clip-note");
  const download = EV.$("dialog-download");
  note.hidden = true;
  video.hidden = !event.clip;
  download.hidden = !event.clip;
  if (event.clip) {
    // a clip several events share starts a second before this one (a media fragment)
    const from = Math.max(0, (event.clip_offset || 0) - 1);
    video.src = from > 0 ? `${event.clip}#t=${from.toFixed(1)}` : event.clip;
    download.href = event.clip;
    video.onerror = () => {
      note.textContent = "This clip does not play in the browser (its codec); download it instead.";
      note.hidden = false;
      video.hidden = true;
    };
    video.play().catch(() => {});
  } else {
    video.removeAttribute("src");
    note.textContent = "The clip is still being written, or was not kept.";
    note.hidden = false;
  }
  const snapshot = EV.$("dialog-snapshot");
  snapshot.hidden = !event.snapshot;
  if (event.snapshot) snapshot.src = event.snapshot;
  const rows = [
    ["time", EV.time(event.time)],
    ["camera", event.camera],
    ["type", event.type],
    ["zone or line", event.zone],
    ["label", event.label],
    ["score", event.score === null ? null : event.score.toFixed(2)],
    ["track", event.track_id],
    ["direction", event.direction],
    ["dwell", event.dwell_seconds === null ? null : `${event.dwell_seconds.toFixed(1)} s`],
    ["event id", event.id],
  ];
  EV.$("dialog-details").replaceChildren(
    ...rows
      .filter(([, v]) => v !== null && v !== undefined)
      .flatMap(([k, v]) => [EV.el("dt", {}, k), EV.el("dd", {}, v)]),
  );
  dialog.showModal();
}

function closeEvent() {
  const video = EV.$("dialog-video");
  video.pause();
  video.removeAttribute("src");
  video.load();
}

EV.views.events = {
  async refresh() {
    const query = new URLSearchParams({ limit: String(eventLimit) });
    if (EV.$("event-camera").value) query.set("camera", EV.$("event-camera").value);
    if (EV.$("event-type").value) query.set("type", EV.$("event-type").value);
    const events = await EV.api(`/api/events?${query}`);
    const key = query + events.map((e) => `${e.id}:${e.snapshot ? 1 : 0}${e.clip ? 1 : 0}`).join(",");
    if (key === shownEvents) return; // unchanged: keep the list (and the thumbnails) as they are
    shownEvents = key;
    EV.$("event-list").replaceChildren(...events.map(eventItem));
    EV.$("event-none").hidden = events.length > 0;
    EV.$("event-more").hidden = events.length < eventLimit || eventLimit >= 1000;
  },
  every: 3000,
};

// ---------------------------------------------------------------- routing and polling
let poller = null;

async function show(name) {
  if (!EV.views[name]) name = "live";
  EV.current = name;
  if (EV.$("event-dialog").open) EV.$("event-dialog").close();
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== name;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === `#${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  clearTimeout(poller);
  await tick();
}

async function tick() {
  const name = EV.current;
  const view = EV.views[name];
  try {
    await view.refresh();
    if (!EV.$("status").classList.contains("ok")) EV.status("");
  } catch (exc) {
    if (exc.status === 401) return;
    if (exc.status === 503) EV.status("The service is reloading its config…");
    else EV.status(`Could not load: ${exc.message}`);
  }
  if (view.every && name === EV.current) poller = setTimeout(tick, view.every);
}

async function start() {
  await loadSession();
  if (!EV.session.can_read) {
    showLogin();
    return;
  }
  EV.$("nav").hidden = false;
  await show(location.hash.slice(1) || "live");
}

document.addEventListener("DOMContentLoaded", () => {
  EV.$("login-form").addEventListener("submit", login);
  EV.$("logout").addEventListener("click", logout);
  EV.$("event-camera").addEventListener("change", () => show("events"));
  EV.$("event-type").addEventListener("change", () => show("events"));
  EV.$("event-more").addEventListener("click", () => {
    eventLimit = Math.min(1000, eventLimit * 2);
    show("events");
  });
  EV.$("event-dialog").addEventListener("close", closeEvent);
  window.addEventListener("hashchange", () => EV.session.can_read && show(location.hash.slice(1)));
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && EV.current === "live") for (const tile of tiles.values()) refreshImage(tile);
  });
  start().catch((exc) => EV.status(`Could not start: ${exc.message}`));
});
