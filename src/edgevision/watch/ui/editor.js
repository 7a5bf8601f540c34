// edgevision watch: the zone and line editor. Draws on the camera's current frame; saving checks the
// whole config on the server, writes it (keeping a .bak) and reloads the service.
"use strict";

(function () {
  const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
  const ed = {
    camera: null,
    shapes: { zones: {}, lines: {} }, // as the write API takes them, coordinates as fractions
    selected: null, // {kind: "zones" | "lines", name}
    mode: null, // "zones" or "lines" while drawing
    draft: [],
    drag: null, // {kind, name, index} of the point being moved
    size: null, // [width, height] of the frame
    dirty: false,
  };

  const $ = EV.$;

  function hint() {
    const text = !EV.session.can_write
      ? EV.session.auth
        ? "Log in to change zones and lines."
        : "Changing zones and lines needs web.auth (a token or a password_hash) in the watch config."
      : ed.mode === "zones"
        ? "Click the corners of the zone; click its first corner or Finish to close it (3 corners at least)."
        : ed.mode === "lines"
          ? "Click the line's two ends. The arrow points to its 'in' side."
          : "Add a zone or a line, or pick one to rename, move its points (drag them) or delete it.";
    $("editor-hint").textContent = text;
    for (const id of ["add-zone", "add-line", "save"]) $(id).disabled = !EV.session.can_write || ed.mode !== null;
    $("finish").hidden = ed.mode !== "zones";
    $("finish").disabled = ed.draft.length < 3;
    $("cancel").hidden = ed.mode === null;
  }

  function freeName(prefix) {
    for (let i = 1; ; i++) {
      const name = `${prefix}${i}`;
      if (!(name in ed.shapes.zones) && !(name in ed.shapes.lines)) return name;
    }
  }

  // ------------------------------------------------------------ drawing the stage
  function render() {
    const svg = $("editor-svg");
    svg.replaceChildren();
    if (!ed.size) return;
    const [w, h] = ed.size;
    const scale = w / 100;
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("preserveAspectRatio", "none");
    const isSelected = (kind, name) => ed.selected && ed.selected.kind === kind && ed.selected.name === name;
    for (const [name, points] of Object.entries(ed.shapes.zones)) {
      const css = isSelected("zones", name) ? "zone selected" : "zone";
      const polygon = EV.svg("polygon", {
        points: points.map(([x, y]) => `${x * w},${y * h}`).join(" "),
        class: css,
        "stroke-width": scale * 0.5,
        "data-name": name,
      });
      polygon.addEventListener("pointerdown", (e) => pick(e, "zones", name));
      svg.append(polygon);
      svg.append(EV.svg("text", { x: points[0][0] * w + scale, y: points[0][1] * h + 4 * scale, "font-size": 2.6 * scale }, name));
    }
    for (const [name, line] of Object.entries(ed.shapes.lines)) {
      EV.drawLine(svg, name, line, w, h, { selected: isSelected("lines", name) });
      const hit = EV.svg("line", {
        x1: line.points[0][0] * w, y1: line.points[0][1] * h, x2: line.points[1][0] * w, y2: line.points[1][1] * h,
        stroke: "transparent", "stroke-width": scale * 3, "data-name": name,
      });
      hit.addEventListener("pointerdown", (e) => pick(e, "lines", name));
      svg.append(hit);
    }
    if (ed.selected) drawHandles(svg, w, h, scale);
    if (ed.draft.length) {
      const points = ed.draft.map(([x, y]) => `${x * w},${y * h}`).join(" ");
      svg.append(EV.svg("polyline", { points, class: "draft", "stroke-width": scale * 0.5 }));
      ed.draft.forEach(([x, y], i) => {
        const handle = EV.svg("circle", { cx: x * w, cy: y * h, r: scale * (i === 0 ? 1.6 : 1.1), class: "handle" });
        svg.append(handle);
      });
    }
  }

  function pointsOf(kind, name) {
    return kind === "zones" ? ed.shapes.zones[name] : ed.shapes.lines[name].points;
  }

  function drawHandles(svg, w, h, scale) {
    const { kind, name } = ed.selected;
    pointsOf(kind, name).forEach(([x, y], index) => {
      const handle = EV.svg("circle", { cx: x * w, cy: y * h, r: scale * 1.3, class: "handle" });
      handle.addEventListener("pointerdown", (e) => {
        if (!EV.session.can_write || ed.mode) return;
        e.stopPropagation();
        ed.drag = { kind, name, index };
        $("editor-svg").setPointerCapture(e.pointerId);
      });
      svg.append(handle);
    });
  }

  function fractionAt(event) {
    const box = $("editor-svg").getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    return [clamp((event.clientX - box.left) / box.width), clamp((event.clientY - box.top) / box.height)].map(
      (v) => Math.round(v * 10000) / 10000,
    );
  }

  // ------------------------------------------------------------ the list and the form
  function renderList() {
    const items = [];
    for (const kind of ["zones", "lines"]) {
      for (const name of Object.keys(ed.shapes[kind])) {
        const pressed = ed.selected && ed.selected.kind === kind && ed.selected.name === name;
        const button = EV.el(
          "button",
          { type: "button", "aria-pressed": pressed ? "true" : "false", "data-name": name, onclick: () => select(kind, name) },
          `${kind === "zones" ? "zone" : "line"} ${name}`,
        );
        items.push(EV.el("li", {}, button));
      }
    }
    if (!items.length) items.push(EV.el("li", { class: "muted" }, "none yet"));
    $("shape-list").replaceChildren(...items);
    $("shape-form").hidden = !ed.selected;
    if (ed.selected) {
      $("shape-name").value = ed.selected.name;
      $("shape-name").disabled = !EV.session.can_write;
      $("delete-shape").disabled = !EV.session.can_write;
      $("direction-row").hidden = ed.selected.kind !== "lines";
      if (ed.selected.kind === "lines") {
        $("shape-direction").value = ed.shapes.lines[ed.selected.name].direction;
        $("shape-direction").disabled = !EV.session.can_write;
      }
    }
  }

  function refreshAll() {
    render();
    renderList();
    hint();
  }

  function select(kind, name) {
    ed.selected = kind ? { kind, name } : null;
    refreshAll();
  }

  function pick(event, kind, name) {
    if (ed.mode) return; // drawing: the click adds a point
    event.stopPropagation();
    select(kind, name);
  }

  function rename() {
    if (!ed.selected) return;
    const { kind, name } = ed.selected;
    const next = $("shape-name").value.trim();
    const taken = next !== name && (next in ed.shapes.zones || next in ed.shapes.lines);
    $("shape-name").setCustomValidity(
      !NAME.test(next) ? "letters, digits, _ and -, starting with a letter or digit" : taken ? "that name is taken" : "",
    );
    if (!NAME.test(next) || taken || next === name) return;
    const renamed = {};
    for (const [key, value] of Object.entries(ed.shapes[kind])) renamed[key === name ? next : key] = value;
    ed.shapes[kind] = renamed;
    ed.selected = { kind, name: next };
    ed.dirty = true;
    render();
    renderList();
  }

  // ------------------------------------------------------------ drawing with the pointer
  function onPointerDown(event) {
    if (!ed.mode) {
      if (event.target === $("editor-svg")) select(null);
      return;
    }
    const point = fractionAt(event);
    if (ed.mode === "zones" && ed.draft.length >= 3) {
      const [x0, y0] = ed.draft[0];
      const near = Math.hypot((point[0] - x0) * ed.size[0], (point[1] - y0) * ed.size[1]) < ed.size[0] * 0.02;
      if (near) return finish();
    }
    ed.draft.push(point);
    if (ed.mode === "lines" && ed.draft.length === 2) return finish();
    render();
    hint();
  }

  function onPointerMove(event) {
    if (!ed.drag) return;
    const points = pointsOf(ed.drag.kind, ed.drag.name);
    points[ed.drag.index] = fractionAt(event);
    ed.dirty = true;
    render();
  }

  function onPointerUp() {
    ed.drag = null;
  }

  function begin(kind) {
    ed.mode = kind;
    ed.draft = [];
    ed.selected = null;
    refreshAll();
  }

  function finish() {
    if (ed.mode === "zones" && ed.draft.length >= 3) {
      const name = freeName("zone");
      ed.shapes.zones[name] = ed.draft;
      ed.selected = { kind: "zones", name };
    } else if (ed.mode === "lines" && ed.draft.length === 2) {
      const name = freeName("line");
      ed.shapes.lines[name] = { points: ed.draft, direction: "both" };
      ed.selected = { kind: "lines", name };
    }
    ed.dirty = ed.dirty || ed.selected !== null;
    ed.mode = null;
    ed.draft = [];
    refreshAll();
  }

  function cancel() {
    ed.mode = null;
    ed.draft = [];
    refreshAll();
  }

  // ------------------------------------------------------------ loading and saving
  async function loadCamera(name) {
    ed.camera = name;
    ed.shapes = await EV.api(`/api/cameras/${encodeURIComponent(name)}/geometry`);
    ed.selected = null;
    ed.dirty = false;
    $("problems").replaceChildren();
    loadFrame();
    refreshAll();
  }

  function loadFrame() {
    $("editor-frame").src = `/api/cameras/${encodeURIComponent(ed.camera)}/latest.jpg?t=${Date.now()}`;
  }

  async function save() {
    const problems = $("problems");
    problems.replaceChildren();
    $("save").disabled = true;
    EV.status("Saving and reloading…");
    try {
      await EV.api(`/api/cameras/${encodeURIComponent(ed.camera)}/geometry`, { method: "PUT", body: ed.shapes });
    } catch (exc) {
      const list = exc.detail && Array.isArray(exc.detail.problems) ? exc.detail.problems : [exc.message];
      problems.replaceChildren(...list.map((text) => EV.el("li", {}, text)));
      EV.status("Not saved: the config has problems (below).");
      hint();
      return;
    }
    ed.dirty = false;
    EV.status("Saved to the config file and reloaded.", true);
    await EV.reloadGeometry();
    await loadCamera(ed.camera);
  }

  EV.views.zones = {
    async refresh() {
      if (!EV.cameras.length) await EV.reloadGeometry();
      const select = $("editor-camera");
      if (!ed.camera || ed.camera !== select.value) await loadCamera(select.value || EV.cameras[0].name);
      else hint();
    },
    every: 0,
  };

  document.addEventListener("DOMContentLoaded", () => {
    const svg = $("editor-svg");
    svg.addEventListener("pointerdown", onPointerDown);
    svg.addEventListener("pointermove", onPointerMove);
    svg.addEventListener("pointerup", onPointerUp);
    svg.addEventListener("pointercancel", onPointerUp);
    $("editor-frame").addEventListener("load", () => {
      ed.size = [$("editor-frame").naturalWidth, $("editor-frame").naturalHeight];
      render();
    });
    $("editor-camera").addEventListener("change", () => {
      if (!ed.dirty || confirm("Drop the changes not saved?")) loadCamera($("editor-camera").value);
      else $("editor-camera").value = ed.camera;
    });
    $("add-zone").addEventListener("click", () => begin("zones"));
    $("add-line").addEventListener("click", () => begin("lines"));
    $("finish").addEventListener("click", finish);
    $("cancel").addEventListener("click", cancel);
    $("refresh-frame").addEventListener("click", loadFrame);
    $("save").addEventListener("click", save);
    $("shape-name").addEventListener("input", rename);
    $("shape-direction").addEventListener("change", () => {
      ed.shapes.lines[ed.selected.name].direction = $("shape-direction").value;
      ed.dirty = true;
      render();
    });
    $("delete-shape").addEventListener("click", () => {
      delete ed.shapes[ed.selected.kind][ed.selected.name];
      ed.dirty = true;
      select(null);
    });
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && ed.mode) cancel();
    });
  });
})();
