// CampusHub charts: tiny server-data → SVG drawing, no libraries. Exposes window.CampusCharts.
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var W = 600, H = 220, PAD_L = 46, PAD_R = 12, PAD_T = 10, PAD_B = 28;

  function node(tag, attrs, text) {
    var n = document.createElementNS(NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { n.setAttribute(k, attrs[k]); });
    if (text !== undefined) { n.textContent = text; }
    return n;
  }

  // points: [{t: ISO time, y: number|null, label: string}] in time order; options: {threshold, empty}.
  // Percentages on a fixed 0–100 axis, one point per session, evenly spaced (sessions, not days, matter).
  function line(svg, points, options) {
    options = options || {};
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("preserveAspectRatio", "none");
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    var plotW = W - PAD_L - PAD_R, plotH = H - PAD_T - PAD_B;
    function y(v) { return PAD_T + plotH * (1 - v / 100); }
    function x(i) { return PAD_L + (points.length < 2 ? plotW / 2 : plotW * i / (points.length - 1)); }
    [0, 25, 50, 75, 100].forEach(function (v) {
      svg.appendChild(node("line", { x1: PAD_L, x2: W - PAD_R, y1: y(v), y2: y(v), "class": "chart-grid" }));
      svg.appendChild(node("text", { x: PAD_L - 6, y: y(v) + 4, "class": "chart-label", "text-anchor": "end" }, v + "%"));
    });
    if (typeof options.threshold === "number") {
      svg.appendChild(node("line", { x1: PAD_L, x2: W - PAD_R, y1: y(options.threshold), y2: y(options.threshold), "class": "chart-threshold" }));
    }
    var valid = points.filter(function (p) { return p.y !== null && p.y !== undefined; });
    if (!valid.length) {
      svg.appendChild(node("text", { x: W / 2, y: H / 2, "class": "chart-empty", "text-anchor": "middle" }, options.empty || "No sessions counted yet"));
      return;
    }
    var path = [];
    points.forEach(function (p, i) {
      if (p.y === null || p.y === undefined) { return; }
      path.push((path.length ? "L" : "M") + x(i).toFixed(1) + " " + y(p.y).toFixed(1));
    });
    svg.appendChild(node("path", { d: path.join(" "), "class": "chart-line" }));
    points.forEach(function (p, i) {
      if (p.y === null || p.y === undefined) { return; }
      var dot = node("circle", { cx: x(i), cy: y(p.y), r: 3.5, "class": "chart-dot" + (p.status ? " chart-dot-" + p.status : "") });
      dot.appendChild(node("title", {}, p.label));
      svg.appendChild(dot);
    });
    var first = new Date(points[0].t), last = new Date(points[points.length - 1].t);
    var fmt = { day: "2-digit", month: "short" };
    svg.appendChild(node("text", { x: PAD_L, y: H - 8, "class": "chart-label" }, first.toLocaleDateString([], fmt)));
    if (points.length > 1) {
      svg.appendChild(node("text", { x: W - PAD_R, y: H - 8, "class": "chart-label", "text-anchor": "end" }, last.toLocaleDateString([], fmt)));
    }
  }

  // Load a series from the API (data-series attribute) and draw it.
  function load(svg) {
    var url = svg.dataset.series;
    if (!url) { return Promise.resolve(); }
    return fetch(url, { credentials: "same-origin" }).then(function (r) { return r.ok ? r.json() : null; }).then(function (body) {
      if (!body) { return; }
      var points = body.points.map(function (p) {
        var when = new Date(p.starts_at).toLocaleString([], { day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit" });
        var label = when + ": " + (p.percentage === null ? "—" : p.percentage.toFixed(2) + "%") + (p.status ? " (" + p.status + ")" : "");
        return { t: p.starts_at, y: p.percentage, status: p.status, label: label };
      });
      line(svg, points, { threshold: body.warning_pct });
    });
  }

  window.CampusCharts = { line: line, load: load };
})();
