// CampusHub charts: server data → SVG, no libraries. The one chart module; exposes window.CampusCharts.
//
// Every chart has labelled axes (with units and time), draws in the svg's own pixel size (so its text is
// never stretched or clipped; it redraws when that size changes), and is accessible: the svg is an image
// whose label names the chart, a one-sentence summary follows it (aria-describedby), and a
// "Show data table" toggle reveals the figures as a table. Charts that load their own data carry
// data-chart ("arrivals", "uptime", "sla") and data-series (the API URL) and are drawn on page load;
// data-refresh="S" reloads one every S seconds while the page is visible.
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var DEFAULT_W = 600, DEFAULT_H = 220;
  var PAD = { l: 58, r: 14, t: 12, b: 46 };
  var uid = 0;

  function node(tag, attrs, text) {
    var n = document.createElementNS(NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { n.setAttribute(k, attrs[k]); });
    if (text !== undefined) { n.textContent = text; }
    return n;
  }
  function html(tag, className, text) {
    var n = document.createElement(tag);
    if (className) { n.className = className; }
    if (text !== undefined) { n.textContent = text; }
    return n;
  }
  function pct(v) { return v === null || v === undefined ? "—" : Number(v).toFixed(2) + "%"; }
  function dayText(iso) {  // "2026-03-02" (a date) or an instant → "02 Mar"
    var d = iso.length === 10 ? new Date(iso + "T12:00:00") : new Date(iso);
    return d.toLocaleDateString([], { day: "2-digit", month: "short" });
  }
  function signed(m) { return (m > 0 ? "+" : m < 0 ? "−" : "") + Math.abs(m); }

  // --- frame: size, axes, titles ---------------------------------------------------------------------

  var drawn = typeof WeakMap === "function" ? new WeakMap() : null;
  var observer = typeof ResizeObserver === "function" ? new ResizeObserver(function (entries) {
    entries.forEach(function (e) {
      var last = drawn && drawn.get(e.target);
      if (last && Math.abs(e.contentRect.width - last.w) > 4) { last.redraw(); }
    });
  }) : null;

  // Remember how to redraw `svg` (after a resize), and start watching it.
  function remember(svg, w, redraw) {
    if (!drawn) { return; }
    var known = drawn.has(svg);
    drawn.set(svg, { w: w, redraw: redraw });
    if (!known && observer) { observer.observe(svg); }
  }

  function start(svg) {
    var box = svg.getBoundingClientRect();
    var w = Math.round(box.width) || DEFAULT_W, h = Math.round(box.height) || DEFAULT_H;
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("preserveAspectRatio", "xMinYMin meet");
    svg.setAttribute("role", "img");
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    return { w: w, h: h, l: PAD.l, r: w - PAD.r, t: PAD.t, b: h - PAD.b };
  }

  // Y grid with tick labels, and both axis titles (spec: {yTicks: [v], yMax, yMin, yText(v), xTitle, yTitle}).
  function axes(svg, f, spec) {
    var yMin = spec.yMin || 0;
    f.y = function (v) { return f.b - (f.b - f.t) * (v - yMin) / ((spec.yMax - yMin) || 1); };
    spec.yTicks.forEach(function (v) {
      svg.appendChild(node("line", { x1: f.l, x2: f.r, y1: f.y(v), y2: f.y(v), "class": "chart-grid" }));
      svg.appendChild(node("text", { x: f.l - 6, y: f.y(v) + 4, "class": "chart-label", "text-anchor": "end" }, spec.yText(v)));
    });
    svg.appendChild(node("line", { x1: f.l, x2: f.r, y1: f.b, y2: f.b, "class": "chart-axis" }));
    svg.appendChild(node("text", { x: (f.l + f.r) / 2, y: f.h - 4, "class": "chart-axis-title chart-x-title", "text-anchor": "middle" }, spec.xTitle));
    var midY = (f.t + f.b) / 2, room = f.b - f.t + PAD.b / 2;
    var yTitle = node("text", { x: 12, y: midY, transform: "rotate(-90 12 " + midY + ")", "class": "chart-axis-title chart-y-title", "text-anchor": "middle" }, spec.yTitle);
    // A short chart (a phone) squeezes a long title rather than clip it.
    if (spec.yTitle.length * 7 > room) { yTitle.setAttribute("textLength", room); yTitle.setAttribute("lengthAdjust", "spacingAndGlyphs"); }
    svg.appendChild(yTitle);
  }

  // Tick labels under the x axis; `ticks`: [{x (px), text, anchor?, cls?, t?}]. Labels that would touch
  // the previous one are left out (the data table has every value).
  function xLabels(svg, f, ticks) {
    var lastEnd = -Infinity, lastNode = null;
    ticks.forEach(function (tick, i) {
      var width = tick.text.length * 6.5;
      var anchor = tick.anchor || "middle";
      var left = anchor === "start" ? tick.x : anchor === "end" ? tick.x - width : tick.x - width / 2;
      if (left < lastEnd + 6) {
        if (i !== ticks.length - 1 || i < 2) { return; }
        svg.removeChild(lastNode);  // the last label (the period's end) wins over the one before it
      }
      var attrs = { x: tick.x, y: f.b + 16, "class": "chart-label" + (tick.cls ? " " + tick.cls : ""), "text-anchor": anchor };
      if (tick.t) { attrs["data-t"] = tick.t; }
      lastNode = svg.appendChild(node("text", attrs, tick.text));
      lastEnd = left + width;
    });
  }

  function niceMax(v) {
    if (v <= 5) { return 5; }
    var step = Math.pow(10, Math.floor(Math.log10(v)));
    var m = Math.ceil(v / step);
    return (m <= 2 ? 2 : m <= 5 ? 5 : 10) * step;
  }
  function countTicks(max) {
    var step = max <= 5 ? 1 : max / 5;
    var out = [];
    for (var v = 0; v <= max + 1e-9; v += step) { out.push(Math.round(v)); }
    return out;
  }
  function empty(svg, f, text) {
    svg.appendChild(node("text", { x: (f.l + f.r) / 2, y: (f.t + f.b) / 2, "class": "chart-empty", "text-anchor": "middle" }, text));
  }

  // --- text alternative: summary + data table toggle ------------------------------------------------

  // After `svg` (inside its figure): a summary sentence and a data table behind a toggle button.
  // table: {caption, columns: [text], rows: [[cell text]]}.
  function describe(svg, summary, table) {
    if (!svg.id) { svg.id = "chart-" + (++uid); }
    var box = document.getElementById(svg.id + "-text");
    if (!box) {
      box = html("div", "chart-text");
      box.id = svg.id + "-text";
      var after = document.getElementById(svg.id + "-legend") || svg;
      after.parentNode.insertBefore(box, after.nextSibling);
    }
    var tableId = svg.id + "-table", wasOpen = false;
    var old = document.getElementById(tableId);
    if (old) { wasOpen = !old.hidden; }
    var p = html("p", "chart-summary", summary);
    p.id = svg.id + "-summary";
    svg.setAttribute("aria-describedby", p.id);
    var children = [p];
    if (table && table.rows.length) {
      var button = html("button", "btn-secondary inline chart-table-toggle", wasOpen ? "Hide data table" : "Show data table");
      button.type = "button";
      button.setAttribute("aria-expanded", String(wasOpen));
      button.setAttribute("aria-controls", tableId);
      var wrap = html("div", "table-wrap chart-table");
      wrap.id = tableId;
      wrap.hidden = !wasOpen;
      wrap.tabIndex = 0;  // it may scroll sideways on a phone: reachable by keyboard
      wrap.setAttribute("role", "region");
      wrap.setAttribute("aria-label", table.caption);
      var t = html("table");
      t.appendChild(html("caption", null, table.caption));
      var head = html("tr");
      table.columns.forEach(function (c) { var th = html("th", null, c); th.scope = "col"; head.appendChild(th); });
      t.appendChild(html("thead")).appendChild(head);
      var body = html("tbody");
      table.rows.forEach(function (r) {
        var tr = html("tr");
        r.forEach(function (cell) { tr.appendChild(html("td", null, String(cell))); });
        body.appendChild(tr);
      });
      t.appendChild(body);
      wrap.appendChild(t);
      button.addEventListener("click", function () {
        wrap.hidden = !wrap.hidden;
        button.setAttribute("aria-expanded", String(!wrap.hidden));
        button.textContent = wrap.hidden ? "Show data table" : "Hide data table";
      });
      children.push(button, wrap);
    }
    box.replaceChildren.apply(box, children);
  }

  // --- attendance over the term (percentages per session) --------------------------------------------

  // points: [{t: ISO time, y: number|null, label: string, status?}] in time order;
  // options: {threshold, empty, yTitle, xTitle}. Percentages on a fixed 0–100 axis, one point per
  // session, evenly spaced (sessions, not days, matter).
  function line(svg, points, options) {
    options = options || {};
    var f = start(svg);
    remember(svg, f.w, function () { line(svg, points, options); });
    axes(svg, f, { yMax: 100, yTicks: [0, 25, 50, 75, 100], yText: function (v) { return v + "%"; },
                   yTitle: options.yTitle || "Attendance (%)", xTitle: options.xTitle || "Session date" });
    function x(i) { return f.l + (points.length < 2 ? (f.r - f.l) / 2 : (f.r - f.l) * i / (points.length - 1)); }
    if (typeof options.threshold === "number") {
      svg.appendChild(node("line", { x1: f.l, x2: f.r, y1: f.y(options.threshold), y2: f.y(options.threshold), "class": "chart-threshold" }));
    }
    var valid = points.filter(function (p) { return p.y !== null && p.y !== undefined; });
    if (!valid.length) {
      empty(svg, f, options.empty || "No sessions counted yet");
    } else {
      var path = [];
      points.forEach(function (p, i) {
        if (p.y === null || p.y === undefined) { return; }
        path.push((path.length ? "L" : "M") + x(i).toFixed(1) + " " + f.y(p.y).toFixed(1));
      });
      svg.appendChild(node("path", { d: path.join(" "), "class": "chart-line" }));
      points.forEach(function (p, i) {
        if (p.y === null || p.y === undefined) { return; }
        var dot = node("circle", { cx: x(i), cy: f.y(p.y), r: 3.5, "class": "chart-dot" + (p.status ? " chart-dot-" + p.status : "") });
        dot.appendChild(node("title", {}, p.label));
        svg.appendChild(dot);
      });
    }
    if (!points.length) { return; }
    var ticks = [{ x: f.l, text: dayText(points[0].t), anchor: "start", cls: "chart-start", t: points[0].t }];
    if (points.length > 1) { ticks.push({ x: f.r, text: dayText(points[points.length - 1].t), anchor: "end" }); }
    xLabels(svg, f, ticks);
  }

  // A term series from the API (the student's or the course's): drawn, summarised, tabulated.
  function drawTerm(svg, body) {
    var perStudent = body.points.length && body.points[0].status !== undefined;
    var points = body.points.map(function (p) {
      var when = new Date(p.starts_at).toLocaleString([], { day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit" });
      var label = when + ": " + pct(p.percentage) + (p.status ? " (" + p.status + ")" : "");
      return { t: p.starts_at, y: p.percentage, status: p.status, label: label };
    });
    // The chart starts where the term does (its first day, midnight in the term's timezone), not at
    // the first session held. A session before the term (bad data) keeps its own place first.
    if (body.term && (!points.length || new Date(body.term.starts_at) <= new Date(points[0].t))) {
      points.unshift({ t: body.term.starts_at, y: null, label: body.term.name + " starts" });
    }
    line(svg, points, { threshold: body.warning_pct,
                        yTitle: "Attendance (%)", xTitle: perStudent ? "Session date" : "Date of each session" });
    var held = body.points.filter(function (p) { return p.percentage !== null; });
    var since = body.term ? " since " + body.term.name + " started (" + dayText(body.term.starts_at) + ")" : "";
    var summary;
    if (!held.length) {
      summary = "No sessions held yet" + since + ".";
    } else if (perStudent) {
      summary = "After " + held.length + " session" + (held.length === 1 ? "" : "s") + since + " your attendance is " +
        pct(held[held.length - 1].percentage) + "; the warning line is at " + body.warning_pct + "%.";
    } else {
      var values = held.map(function (p) { return p.percentage; });
      var low = Math.min.apply(null, values);
      var avg = values.reduce(function (a, b) { return a + b; }, 0) / values.length;
      summary = held.length + " session" + (held.length === 1 ? "" : "s") + " held" + since + ": average " + pct(avg) +
        ", lowest " + pct(low) + ", latest " + pct(values[values.length - 1]) + ".";
    }
    var columns = perStudent ? ["Session", "Status", "Attendance after it"] : ["Session", "Present", "Late", "Absent", "Excused", "Attendance"];
    var rows = body.points.map(function (p) {
      var when = new Date(p.starts_at).toLocaleString([], { day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit" });
      return perStudent ? [when, p.status, pct(p.percentage)] : [when, p.present, p.late, p.absent, p.excused, pct(p.percentage)];
    });
    describe(svg, summary, { caption: svg.getAttribute("aria-label") || "Attendance", columns: columns, rows: rows });
  }

  // --- arrival curve -------------------------------------------------------------------------------

  // body: GET /api/v1/sessions/{id}/arrivals. A step line: students checked in (y) by minute from the
  // start (x), with the start and the end of the grace period marked.
  function drawArrivals(svg, body) {
    var f = start(svg);
    remember(svg, f.w, function () { drawArrivals(svg, body); });
    var pts = body.points, grace = body.grace_minutes;
    var first = pts.length ? pts[0].minute : 0, last = pts.length ? pts[pts.length - 1].minute : 0;
    var xMin = Math.min(first, -5), xMax = Math.max(last + 1, grace + 5, 15);
    var yMax = niceMax(Math.max(body.enrolled, body.checked_in, 1));
    axes(svg, f, { yMax: yMax, yTicks: countTicks(yMax), yText: String,
                   yTitle: "Students checked in", xTitle: "Minutes from the start" });
    function x(m) { return f.l + (f.r - f.l) * (m - xMin) / (xMax - xMin); }
    [[0, "Start", "chart-marker"], [grace, "Grace ends", "chart-marker chart-marker-grace"]].forEach(function (mark) {
      svg.appendChild(node("line", { x1: x(mark[0]), x2: x(mark[0]), y1: f.t, y2: f.b, "class": mark[2] }));
      svg.appendChild(node("text", { x: x(mark[0]) + 4, y: f.t + 12, "class": "chart-label" }, mark[1]));
    });
    if (body.enrolled > 0) {
      svg.appendChild(node("line", { x1: f.l, x2: f.r, y1: f.y(body.enrolled), y2: f.y(body.enrolled), "class": "chart-threshold" }));
      svg.appendChild(node("text", { x: f.r - 4, y: f.y(body.enrolled) - 4, "class": "chart-label", "text-anchor": "end" }, body.enrolled + " enrolled"));
    }
    var step = [1, 2, 5, 10, 15, 30, 60, 120].filter(function (s) { return (xMax - xMin) / s <= 10; })[0] || 240;
    var ticks = [];
    for (var m = Math.ceil(xMin / step) * step; m <= xMax; m += step) { ticks.push({ x: x(m), text: signed(m) }); }
    xLabels(svg, f, ticks);
    if (!pts.length) {
      empty(svg, f, "No one has checked in yet");
    } else {
      var d = "M" + x(xMin).toFixed(1) + " " + f.y(0).toFixed(1), prev = 0;
      pts.forEach(function (p) {
        d += " L" + x(p.minute).toFixed(1) + " " + f.y(prev).toFixed(1) + " L" + x(p.minute).toFixed(1) + " " + f.y(p.checked_in).toFixed(1);
        prev = p.checked_in;
      });
      d += " L" + x(xMax).toFixed(1) + " " + f.y(prev).toFixed(1);
      svg.appendChild(node("path", { d: d, "class": "chart-line chart-step" }));
    }
    var n = body.checked_in, half = Math.ceil(n / 2), median = null;
    pts.some(function (p) { if (p.checked_in >= half) { median = p.minute; return true; } return false; });
    var summary = n ? n + " of " + body.enrolled + " enrolled students checked in: " + body.before_start + " before the start, " +
      (body.within_grace - body.before_start) + " within the " + grace + "-minute grace period, " + (n - body.within_grace) +
      " after it. Half had arrived by minute " + signed(median) + "." : "No one has checked in by scan yet (" + body.enrolled + " enrolled).";
    describe(svg, summary, { caption: "Check-ins by minute from the start", columns: ["Minute from the start", "Checked in by then"],
                             rows: pts.map(function (p) { return [signed(p.minute), p.checked_in]; }) });
  }

  // --- bars: device uptime, ticket SLA compliance ----------------------------------------------------

  // bars: [{label, segments: [{value, cls, title}], missing?}] drawn side by side, segments stacked.
  function bars(svg, f, list) {
    var slot = (f.r - f.l) / Math.max(list.length, 1), width = Math.max(2, Math.min(40, slot * 0.7));
    list.forEach(function (bar, i) {
      var cx = f.l + slot * (i + 0.5), base = 0;
      if (bar.missing) {
        svg.appendChild(node("text", { x: cx, y: f.b - 6, "class": "chart-label", "text-anchor": "middle" }, "–"));
      }
      bar.segments.forEach(function (s) {
        if (!s.value) { return; }
        var top = f.y(base + s.value), bottom = f.y(base);
        var rect = node("rect", { x: cx - width / 2, y: top, width: width, height: Math.max(bottom - top, 1), "class": "chart-bar " + s.cls });
        rect.appendChild(node("title", {}, s.title));
        svg.appendChild(rect);
        base += s.value;
      });
    });
    xLabels(svg, f, list.map(function (bar, i) { return { x: f.l + slot * (i + 0.5), text: bar.label }; }));
  }

  function legend(svg, items) {
    var id = (svg.id || "") + "-legend", ul = document.getElementById(id);
    if (!ul) {
      ul = html("ul", "chart-legend");
      ul.id = id;
      ul.setAttribute("aria-hidden", "true");  // the summary and the table say the same in words
      svg.parentNode.insertBefore(ul, svg.nextSibling);
    }
    ul.replaceChildren.apply(ul, items.map(function (it) {
      var li = html("li");
      li.appendChild(html("span", "chart-swatch " + it[0]));
      li.appendChild(document.createTextNode(it[1]));
      return li;
    }));
  }

  // body: GET /api/v1/devices/{id}/uptime. One bar per day: % of the known time online.
  function drawUptime(svg, body) {
    if (!svg.id) { svg.id = "chart-" + (++uid); }
    var f = start(svg);
    remember(svg, f.w, function () { drawUptime(svg, body); });
    axes(svg, f, { yMax: 100, yTicks: [0, 25, 50, 75, 100], yText: function (v) { return v + "%"; },
                   yTitle: "Online (% of day)", xTitle: "Day (" + body.timezone + ")" });
    bars(svg, f, body.days.map(function (d) {
      return { label: dayText(d.day), missing: d.online_pct === null,
               segments: [{ value: d.online_pct || 0, cls: "chart-bar-ok", title: dayText(d.day) + ": " + pct(d.online_pct) + " online" }] };
    }));
    var known = body.days.filter(function (d) { return d.online_pct !== null; });
    var summary;
    if (!known.length) {
      summary = "No online or offline record in the last " + body.days.length + " days.";
    } else {
      var low = known.reduce(function (a, d) { return d.online_pct < a.online_pct ? d : a; });
      var missing = body.days.length - known.length;
      summary = "Online " + pct(body.online_pct) + " of the recorded time over the last " + body.days.length + " days" +
        (low.online_pct < 100 ? "; lowest " + pct(low.online_pct) + " on " + dayText(low.day) + "." : ", never offline.") +
        (missing ? " " + missing + " day" + (missing === 1 ? "" : "s") + " without records." : "");
    }
    function hours(s) { return (s / 3600).toFixed(1); }
    describe(svg, summary, { caption: "Uptime per day (" + body.timezone + ")", columns: ["Day", "Online (h)", "Recorded (h)", "Online (%)"],
                             rows: body.days.map(function (d) { return [dayText(d.day), hours(d.online_s), hours(d.known_s), pct(d.online_pct)]; }) });
  }

  // body: GET /api/v1/tickets/sla-compliance. Stacked bars per week: on time, breached, still open.
  function drawSla(svg, body) {
    if (!svg.id) { svg.id = "chart-" + (++uid); }
    var f = start(svg);
    remember(svg, f.w, function () { drawSla(svg, body); });
    var most = Math.max.apply(null, body.weeks.map(function (w) { return w.on_time + w.breached + w.pending; }).concat([1]));
    var yMax = niceMax(most);
    axes(svg, f, { yMax: yMax, yTicks: countTicks(yMax), yText: String,
                   yTitle: "Tickets due", xTitle: "Week starting (" + body.timezone + ")" });
    bars(svg, f, body.weeks.map(function (w) {
      var label = dayText(w.week);
      return { label: label, segments: [
        { value: w.on_time, cls: "chart-bar-ok", title: "Week of " + label + ": " + w.on_time + " resolved on time" },
        { value: w.breached, cls: "chart-bar-bad", title: "Week of " + label + ": " + w.breached + " late" },
        { value: w.pending, cls: "chart-bar-pending", title: "Week of " + label + ": " + w.pending + " not yet due" }] };
    }));
    legend(svg, [["chart-bar-ok", "Resolved on time"], ["chart-bar-bad", "Late (past due)"], ["chart-bar-pending", "Open, not yet due"]]);
    var decided = body.on_time + body.breached;
    var pending = body.weeks.reduce(function (a, w) { return a + w.pending; }, 0);
    var weeks = body.weeks.length === 1 ? "this week" : "the last " + body.weeks.length + " weeks";
    var summary = decided ? body.on_time + " of " + decided + (decided === 1 ? " ticket" : " tickets") + " due in " + weeks + (decided === 1 ? " was" : " were") + " resolved on time (" +
      pct(body.on_time_pct) + "); " + body.breached + " late." : "No tickets were due in " + weeks + ".";
    if (pending) { summary += " " + pending + " open, not yet due."; }
    describe(svg, summary, { caption: "Tickets per week of their due time", columns: ["Week starting", "On time", "Late", "Not yet due", "On time (%)"],
                             rows: body.weeks.map(function (w) { return [dayText(w.week), w.on_time, w.breached, w.pending, pct(w.on_time_pct)]; }) });
  }

  // --- sparkline (console tiles) ---------------------------------------------------------------------

  // values: numbers oldest first (null: a gap); options: {min, max, label, unit, threshold, digits}.
  function sparkline(svg, values, options) {
    options = options || {};
    var nums = values.filter(function (v) { return typeof v === "number" && isFinite(v); });
    var lo = typeof options.min === "number" ? options.min : Math.min.apply(null, nums.length ? nums : [0]);
    var hi = typeof options.max === "number" ? options.max : Math.max.apply(null, nums.length ? nums : [1]);
    if (hi === lo) { hi = lo + 1; lo = lo - 1; }
    var W = 100, H = 24, digits = options.digits || 0, unit = options.unit ? " " + options.unit : "";
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    function y(v) { return (H - 2) - (H - 4) * (Math.min(Math.max(v, lo), hi) - lo) / (hi - lo); }
    var pts = [];
    values.forEach(function (v, i) {
      if (typeof v !== "number" || !isFinite(v)) { return; }
      pts.push((values.length < 2 ? W / 2 : W * i / (values.length - 1)).toFixed(1) + "," + y(v).toFixed(1));
    });
    var text = (options.label || "Trend") + ": " + (nums.length ?
      "latest " + nums[nums.length - 1].toFixed(digits) + unit + ", range " + Math.min.apply(null, nums).toFixed(digits) + "–" +
      Math.max.apply(null, nums).toFixed(digits) + unit + ", " + nums.length + " readings" : "no readings");
    svg.setAttribute("aria-label", text);
    var poly = svg.querySelector("polyline.sparkline-line"), title = svg.querySelector("title"), limit = svg.querySelector("line.sparkline-threshold");
    if (!title) { title = svg.appendChild(node("title", {})); }
    title.textContent = text;
    if (typeof options.threshold === "number") {
      if (!limit) { limit = svg.appendChild(node("line", { "class": "sparkline-threshold", x1: 0, x2: W })); }
      limit.setAttribute("y1", y(options.threshold));
      limit.setAttribute("y2", y(options.threshold));
    } else if (limit) { svg.removeChild(limit); }
    if (!poly) { poly = svg.appendChild(node("polyline", { "class": "sparkline-line" })); }
    poly.setAttribute("points", nums.length >= 2 ? pts.join(" ") : "0," + H / 2 + " " + W + "," + H / 2);
    svg.classList.toggle("sparkline-empty", nums.length < 2);
  }

  // body: GET /api/v1/courses/{c}/terms/{t}/grades. One bar per grade of the scale: students earning it.
  function drawGrades(svg, body) {
    if (!svg.id) { svg.id = "chart-" + (++uid); }
    var f = start(svg);
    remember(svg, f.w, function () { drawGrades(svg, body); });
    var dist = body.distribution, total = dist.reduce(function (a, d) { return a + d.students; }, 0);
    var yMax = niceMax(Math.max.apply(null, dist.map(function (d) { return d.students; }).concat([1])));
    axes(svg, f, { yMax: yMax, yTicks: countTicks(yMax), yText: String, yTitle: "Students", xTitle: "Grade" });
    var passing = {};
    body.scale.bands.forEach(function (b) { passing[b.letter] = b.is_pass; });
    bars(svg, f, dist.map(function (d) {
      return { label: d.letter, segments: [{ value: d.students, cls: passing[d.letter] === false ? "chart-bar-bad" : "chart-bar-ok",
                                             title: d.letter + ": " + d.students + (d.students === 1 ? " student" : " students") }] };
    }));
    if (!total) { empty(svg, f, "No grades yet"); }
    var most = dist.reduce(function (a, d) { return d.students > a.students ? d : a; }, dist[0] || { letter: "—", students: 0 });
    var failing = dist.filter(function (d) { return passing[d.letter] === false; }).reduce(function (a, d) { return a + d.students; }, 0);
    var summary = total ? total + (total === 1 ? " student has" : " students have") + " a grade; the most common is " + most.letter +
      " (" + most.students + "). " + failing + " not passing." : "No student has a grade yet: there are no marks.";
    describe(svg, summary, { caption: "Students per grade", columns: ["Grade", "Students"],
                             rows: dist.map(function (d) { return [d.letter, d.students]; }) });
  }

  // body: GET /api/v1/courses/{c}/coverage. Syllabus pace: the plan's cumulative minutes after each
  // session (dashed) and the estimated minutes of the topics covered by then (solid), in hours.
  function drawPace(svg, body) {
    if (!svg.id) { svg.id = "chart-" + (++uid); }
    var f = start(svg);
    remember(svg, f.w, function () { drawPace(svg, body); });
    var pts = body.points, hours = function (m) { return m === null ? null : m / 60; };
    var yMax = niceMax(Math.max(hours(body.planned_total_minutes), 1));
    axes(svg, f, { yMax: yMax, yTicks: countTicks(yMax), yText: function (v) { return v + " h"; },
                   yTitle: "Syllabus (hours)", xTitle: "Sessions of the term" });
    function x(i) { return f.l + (pts.length < 2 ? (f.r - f.l) / 2 : (f.r - f.l) * i / (pts.length - 1)); }
    function path(key, cls) {
      var d = [];
      pts.forEach(function (p, i) {
        if (p[key] === null) { return; }
        d.push((d.length ? "L" : "M") + x(i).toFixed(1) + " " + f.y(hours(p[key])).toFixed(1));
      });
      if (d.length) { svg.appendChild(node("path", { d: d.join(" "), "class": cls })); }
    }
    if (!pts.length) {
      empty(svg, f, "No sessions scheduled yet");
    } else {
      path("planned_minutes", "chart-line chart-line-plan");
      path("covered_minutes", "chart-line");
      xLabels(svg, f, [{ x: f.l, text: dayText(pts[0].starts_at), anchor: "start" },
                       { x: f.r, text: dayText(pts[pts.length - 1].starts_at), anchor: "end" }]);
    }
    legend(svg, [["chart-swatch-plan", "Planned"], ["chart-swatch-covered", "Covered"]]);
    function h(m) { return m === null ? "—" : (m / 60).toFixed(1) + " h"; }
    var summary = !pts.length ? "No sessions are scheduled for this course yet." :
      body.topics_covered + " of " + body.topics_total + " topics covered: " + h(body.covered_minutes) + " of the syllabus, against " +
      h(body.planned_minutes) + " planned by now" + (body.pace_ratio === null ? "." : " (" + Math.round(body.pace_ratio * 100) + "% of the plan).");
    describe(svg, summary, { caption: "Syllabus covered and planned after each session", columns: ["Session", "Planned", "Covered"],
                             rows: pts.map(function (p) { return [dayText(p.starts_at), h(p.planned_minutes), h(p.covered_minutes)]; }) });
  }

  // --- loading ---------------------------------------------------------------------------------------

  var DRAW = { arrivals: drawArrivals, uptime: drawUptime, sla: drawSla, term: drawTerm, grades: drawGrades, pace: drawPace };

  // Load a chart's data (data-series) and draw it by its kind (data-chart; default: a term series).
  function load(svg) {
    var url = svg.dataset.series;
    if (!url) { return Promise.resolve(); }
    var draw = DRAW[svg.dataset.chart || "term"];
    return fetch(url, { credentials: "same-origin" }).then(function (r) { return r.ok ? r.json() : null; }).then(function (body) {
      if (!body) { return; }
      draw(svg, body);
    });
  }

  function loadAll() {
    document.querySelectorAll("svg[data-chart][data-series]").forEach(function (svg) {
      load(svg);
      var every = Number(svg.dataset.refresh);
      if (every > 0) { setInterval(function () { if (!document.hidden) { load(svg); } }, every * 1000); }
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", loadAll); } else { loadAll(); }

  window.CampusCharts = { line: line, load: load, sparkline: sparkline, describe: describe,
                          drawArrivals: drawArrivals, drawUptime: drawUptime, drawSla: drawSla, drawTerm: drawTerm,
                          drawPace: drawPace };
})();
