// edgevision watch: counts over time, as SVG bar charts drawn here (no chart library).
"use strict";

(function () {
  const W = 480;
  const H = 180;
  const PAD = { left: 34, right: 8, top: 10, bottom: 22 };

  // One chart per camera and zone or line (each line or zone of the running config, with events or not):
  // bars per bucket, "in" and "out" side by side for crossings.
  function chartsOf(data, type) {
    const charts = new Map();
    const chart = (camera, zone) => {
      const key = `${camera}\u0000${zone || ""}`;
      if (!charts.has(key)) {
        const parts = type === "cross" ? { in: new Map(), out: new Map() } : { all: new Map() };
        charts.set(key, { camera, zone, type, parts });
      }
      return charts.get(key);
    };
    for (const [camera, geometry] of Object.entries(EV.geometry)) {
      for (const zone of Object.keys((type === "cross" ? geometry.lines : geometry.zones) || {})) chart(camera, zone);
    }
    for (const series of data.series) {
      chart(series.camera, series.zone).parts[series.direction || "all"] = new Map(series.counts);
    }
    return [...charts.values()].sort((a, b) => `${a.camera} ${a.zone}`.localeCompare(`${b.camera} ${b.zone}`));
  }

  function buckets(data) {
    const first = Math.floor(data.since / data.bucket) * data.bucket;
    const starts = [];
    for (let t = first; t < data.until; t += data.bucket) starts.push(t);
    return starts;
  }

  function label(seconds, bucket) {
    const date = new Date(seconds * 1000);
    return bucket >= 86400 / 4
      ? date.toLocaleDateString([], { month: "short", day: "numeric", hour: "2-digit" })
      : date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function drawChart(chart, starts, bucket) {
    const parts = Object.keys(chart.parts).sort(); // "all", or "in" and "out"
    const max = Math.max(1, ...parts.flatMap((p) => [...chart.parts[p].values()]));
    const plotW = W - PAD.left - PAD.right;
    const plotH = H - PAD.top - PAD.bottom;
    const slot = plotW / starts.length;
    const barW = Math.max(1, (slot * 0.8) / parts.length);
    const svg = EV.svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
    svg.append(EV.svg("title", {}, `${chart.type} counts of ${chart.zone} on ${chart.camera}`));
    svg.append(EV.svg("line", { x1: PAD.left, y1: PAD.top + plotH, x2: W - PAD.right, y2: PAD.top + plotH, class: "axis" }));
    svg.append(EV.svg("text", { x: PAD.left - 4, y: PAD.top + 8, "text-anchor": "end", class: "label" }, max));
    svg.append(EV.svg("text", { x: PAD.left - 4, y: PAD.top + plotH, "text-anchor": "end", class: "label" }, 0));
    starts.forEach((start, i) => {
      parts.forEach((part, j) => {
        const n = chart.parts[part].get(start) || 0;
        if (!n) return;
        const h = (n / max) * plotH;
        const x = PAD.left + i * slot + slot * 0.1 + j * barW;
        const bar = EV.svg("rect", { x, y: PAD.top + plotH - h, width: barW, height: h, class: `bar-${part}` });
        bar.append(EV.svg("title", {}, `${label(start, bucket)}: ${n} ${part === "all" ? "" : part}`.trim()));
        svg.append(bar);
      });
    });
    const ticks = [
      [0, "start"],
      [Math.floor(starts.length / 2), "middle"],
      [starts.length - 1, "end"],
    ];
    for (const [i, anchor] of ticks) {
      const x = PAD.left + i * slot + (anchor === "start" ? 0 : anchor === "end" ? slot : slot / 2);
      svg.append(EV.svg("text", { x, y: H - 6, "text-anchor": anchor, class: "label" }, label(starts[i], bucket)));
    }
    return svg;
  }

  function card(chart, starts, bucket) {
    const totals = Object.entries(chart.parts).map(([part, counts]) => {
      const total = [...counts.values()].reduce((a, b) => a + b, 0);
      return EV.el("span", { class: part }, part === "all" ? `${total} in all` : `${total} ${part}`);
    });
    return EV.el(
      "figure",
      { class: "chart", "data-camera": chart.camera, "data-zone": chart.zone || "" },
      EV.el("h2", {}, `${chart.camera} · ${chart.zone || "?"}`),
      drawChart(chart, starts, bucket),
      EV.el("figcaption", { class: "legend" }, ...totals),
    );
  }

  EV.views.counts = {
    async refresh() {
      const [range, bucket] = EV.$("count-range").value.split(":").map(Number);
      const type = EV.$("count-type").value;
      const until = Date.now() / 1000;
      const query = new URLSearchParams({ type, bucket: String(bucket), since: String(until - range), until: String(until) });
      const data = await EV.api(`/api/counts?${query}`);
      if (!Object.keys(EV.geometry).length) await EV.reloadGeometry();
      const charts = chartsOf(data, type);
      const starts = buckets(data);
      const box = EV.$("charts");
      if (!charts.length) {
        box.replaceChildren(EV.el("p", { class: "muted" }, "No such events in this time."));
        return;
      }
      box.replaceChildren(...charts.map((chart) => card(chart, starts, bucket)));
    },
    every: 10000,
  };

  document.addEventListener("DOMContentLoaded", () => {
    for (const id of ["count-range", "count-type"]) EV.$(id).addEventListener("change", () => location.hash === "#counts" && EV.views.counts.refresh());
  });
})();
