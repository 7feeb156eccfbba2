// CampusHub ops console: device grid, device detail, alarm list, ticket board, and the report form.
// Plain ES2017, no build step. Pages are rendered server-side; this keeps them live over
// /ws/devices (snapshot, then "device", "alarm", "ticket", "ticket_comment", "command" messages)
// and sends every change through the JSON API.
(function () {
  "use strict";

  // --- small helpers --------------------------------------------------------------------------

  var el = window.CampusHub.el;  // app.js's element helper

  function fmt(iso) {
    if (!iso) { return "—"; }
    var d = new Date(iso);
    if (isNaN(d)) { return String(iso); }
    return d.toLocaleString([], { day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit" });
  }

  function timeTag(iso) {
    if (!iso) { return el("span", "muted", "—"); }
    var t = el("time", null, fmt(iso));
    t.setAttribute("datetime", iso);
    t.dataset.format = "datetime";
    return t;
  }

  function byData(root, attr, value) {
    return root.querySelector("[" + attr + "=\"" + CSS.escape(String(value)) + "\"]");
  }

  function row(cells) {
    var tr = el("tr");
    cells.forEach(function (cell) {
      var td = el("td");
      if (cell instanceof Node) { td.appendChild(cell); } else { td.textContent = cell === null || cell === undefined ? "—" : String(cell); }
      tr.appendChild(td);
    });
    return tr;
  }

  // The JSON API (app.js's one call); rejects with the server's error message. The cookie session is
  // refreshed by the server on any request, so no retry dance is needed; an ended one goes to the login.
  function api(method, path, body) { return window.CampusHub.api(method, path, body, { loginOn401: true }); }

  function emptyRow(cols, text) {
    var tr = el("tr", "empty"), td = el("td", "empty-state", text);
    td.colSpan = cols;
    tr.appendChild(td);
    return tr;
  }

  function showError(node, error) {
    if (!node) { return; }
    node.textContent = error ? error.message : "";
    node.hidden = !error;
  }

  // The one websocket client (reconnect, backoff, session refresh) is app.js's.
  var liveSocket = window.CampusHub.liveSocket;

  // Same rule as web/console.py health_of().
  var OUTBOX_WARNING = 100;
  function healthOf(device, severities) {
    if (device.revoked) { return "revoked"; }
    if (!device.online) { return "offline"; }
    if (severities.indexOf("critical") >= 0 || severities.indexOf("major") >= 0) { return "critical"; }
    if (severities.length || (device.outbox_depth || 0) > OUTBOX_WARNING || (device.error_count || 0) > 0) { return "warning"; }
    return "ok";
  }
  var ACTIVE = { active_unacked: true, active_acked: true };

  function debounce(fn, ms) {
    var timer = null;
    return function () { clearTimeout(timer); timer = setTimeout(fn, ms); };
  }

  // --- campus overview: one tile per room ----------------------------------------------------------
  //
  // Live messages only update state maps and mark rooms dirty; one requestAnimationFrame pass, at most
  // every REPAINT_EVERY_MS, then repaints the dirty tiles, so a burst of device updates (3,000 devices)
  // costs a few paints a second, not one per message. Readings are not on the bus: they are re-read
  // every READINGS_EVERY_MS.

  var READINGS_EVERY_MS = 60000;
  var SPARK = { temperature: { label: "Temperature", unit: "°C", digits: 1 }, co2: { label: "CO2", unit: "ppm", digits: 0 } };
  var HEALTH_RANK = { offline: 0, critical: 1, warning: 2, ok: 3, revoked: 4 };

  function drawSpark(svg, values) {
    var meta = SPARK[svg.dataset.metric] || { label: svg.dataset.metric };
    if (window.CampusCharts && window.CampusCharts.sparkline) {
      window.CampusCharts.sparkline(svg, values, { label: meta.label, unit: meta.unit, digits: meta.digits });
    }
  }

  function readingText(reading, metric) {
    var meta = SPARK[metric] || { digits: 1, unit: "" };
    if (!reading) { return "– " + meta.unit; }
    return Number(reading.value).toFixed(meta.digits) + " " + reading.unit;
  }

  // The open-alarm count: the alarm list's own total for its default filter ("open"), one source.
  function openAlarmCounter(badge) {
    return debounce(function () {
      api("GET", "/api/v1/alarms?state=open&limit=1").then(function (page) { badge.textContent = page.total; }, function () {});
    }, 500);
  }

  function initGrid() {
    var overview = document.getElementById("overview");
    var tiles = {};        // room id → tile element
    var dots = {};         // device id → its dot in the tile
    var devices = {};      // device id → latest device fields
    var deviceAlarms = {}; // device id → {alarm id: severity} of its active alarms
    var alarmDevice = {};  // alarm id → device id
    var dirty = {}, scheduled = false;
    var stats = { messages: 0, frames: 0, tilesPainted: 0 };
    overview.campusStats = stats;  // read by bench/console_scale.py

    overview.querySelectorAll("article.tile").forEach(function (tile) { tiles[tile.dataset.roomId] = tile; });
    overview.querySelectorAll("a.device[data-device-id]").forEach(function (dot) {
      dots[dot.dataset.deviceId] = dot;
      devices[dot.dataset.deviceId] = { device_id: dot.dataset.deviceId, room_id: dot.closest("article.tile").dataset.roomId,
        online: dot.classList.contains("device-online"), revoked: dot.dataset.health === "revoked" };
    });
    overview.querySelectorAll("svg.sparkline").forEach(function (svg) { drawSpark(svg, JSON.parse(svg.dataset.values || "[]")); });

    function severities(deviceId) {
      var mine = deviceAlarms[deviceId] || {};
      return Object.keys(mine).map(function (k) { return mine[k]; });
    }
    // At most one repaint every REPAINT_EVERY_MS, in an animation frame: at 100 device messages a second a
    // repaint per frame cost about half a core in Chromium (bench/console_scale.py); a colour a quarter of
    // a second late is still live to a person.
    var REPAINT_EVERY_MS = 250, lastFlush = 0;
    function markDirty(roomId) {
      if (!roomId || !tiles[roomId]) { return; }
      dirty[roomId] = true;
      if (!scheduled) {
        scheduled = true;
        setTimeout(function () { requestAnimationFrame(flush); }, Math.max(0, lastFlush + REPAINT_EVERY_MS - Date.now()));
      }
    }
    function paint(roomId) {
      var tile = tiles[roomId], worst = null;
      tile.querySelectorAll("a.device[data-device-id]").forEach(function (dot) {
        var d = devices[dot.dataset.deviceId];
        if (!d) { return; }
        var health = healthOf(d, severities(d.device_id));
        if (dot.dataset.health !== health) { dot.dataset.health = health; }
        dot.classList.toggle("device-online", !!d.online);
        dot.classList.toggle("device-offline", !d.online);
        // The dot's own text is the kind in words (ops.html); the snapshot's d.kind is the API's code.
        dot.title = d.device_id + " (" + dot.textContent + "): " + health;
        if (worst === null || HEALTH_RANK[health] < HEALTH_RANK[worst]) { worst = health; }
      });
      worst = worst || "empty";
      if (tile.dataset.health !== worst) {
        tile.dataset.health = worst;
        tile.querySelector(".tile-state").textContent = worst;
      }
      stats.tilesPainted += 1;
    }
    function flush() {
      scheduled = false;
      lastFlush = Date.now();
      stats.frames += 1;
      var rooms = Object.keys(dirty);
      dirty = {};
      rooms.forEach(paint);
      var ids = Object.keys(devices);
      document.getElementById("devices-online").textContent = ids.filter(function (id) { return devices[id].online; }).length;
      document.getElementById("devices-total").textContent = ids.length;
      if (filtering()) { filter(); }
    }

    var inputs = { search: document.getElementById("filter-search"), building: document.getElementById("filter-building"),
      state: document.getElementById("filter-state") };
    function filtering() { return inputs.search.value.trim() || inputs.building.value || inputs.state.value; }
    function filter() {
      var q = inputs.search.value.trim().toLowerCase(), shown = 0;
      Object.keys(tiles).forEach(function (roomId) {
        var tile = tiles[roomId];
        var text = (tile.querySelector("h4 a").textContent + " " + tile.dataset.building + " "
          + Array.prototype.map.call(tile.querySelectorAll("a.device"), function (d) { return d.dataset.deviceId; }).join(" ")).toLowerCase();
        var ok = (!q || text.indexOf(q) >= 0) && (!inputs.building.value || tile.dataset.building === inputs.building.value)
          && (!inputs.state.value || tile.dataset.health === inputs.state.value);
        tile.hidden = !ok;
        shown += ok ? 1 : 0;
      });
      overview.querySelectorAll(".floor, .building").forEach(function (g) { g.hidden = !g.querySelector("article.tile:not([hidden])"); });
      document.getElementById("no-match").hidden = shown > 0 || !Object.keys(tiles).length;
    }
    Object.keys(inputs).forEach(function (k) { inputs[k].addEventListener("input", filter); });
    document.getElementById("grid-filters").addEventListener("submit", function (e) { e.preventDefault(); });

    function applyReadings(rooms) {
      rooms.forEach(function (r) {
        var tile = tiles[r.room_id];
        if (!tile) { return; }
        tile.querySelectorAll(".reading[data-metric]").forEach(function (span) {
          var text = readingText(r.readings[span.dataset.metric], span.dataset.metric);
          if (span.textContent !== text) { span.textContent = text; }
        });
        var occupancy = r.occupancy === null ? "no class" : r.occupancy + " present";
        var occ = tile.querySelector(".occupancy");
        if (occ.textContent !== occupancy) { occ.textContent = occupancy; }
        tile.querySelectorAll("svg.sparkline").forEach(function (svg) {
          var values = JSON.stringify(r.sparks[svg.dataset.metric] || []);
          if (svg.dataset.values !== values) { svg.dataset.values = values; drawSpark(svg, JSON.parse(values)); }
        });
      });
    }
    setInterval(function () {
      if (!document.hidden) { api("GET", overview.dataset.readings).then(function (body) { applyReadings(body.rooms); }, function () {}); }
    }, READINGS_EVERY_MS);

    var countOpen = openAlarmCounter(document.getElementById("alarm-count"));
    liveSocket(overview.dataset.ws, function (message) {
      stats.messages += 1;
      if (message.type === "snapshot") {
        deviceAlarms = {}; alarmDevice = {};
        message.alarms.forEach(function (a) {
          (deviceAlarms[a.device_id] = deviceAlarms[a.device_id] || {})[a.alarm_id] = a.severity;
          alarmDevice[a.alarm_id] = a.device_id;
        });
        message.devices.forEach(function (d) {
          // A device registered since the page was drawn has no dot: it shows on the next load.
          if (dots[d.device_id]) { devices[d.device_id] = Object.assign(devices[d.device_id], d); }
        });
        Object.keys(tiles).forEach(markDirty);
        countOpen();
      } else if (message.type === "device") {
        var known = devices[message.device_id];
        if (!known) { return; }  // registered since the page was drawn (see the snapshot)
        Object.assign(known, message);
        markDirty(known.room_id);
      } else if (message.type === "alarm") {
        var mine = deviceAlarms[message.device_id] = deviceAlarms[message.device_id] || {};
        if (ACTIVE[message.state]) { mine[message.alarm_id] = message.severity; } else { delete mine[message.alarm_id]; }
        markDirty((devices[message.device_id] || {}).room_id);
        countOpen();
      }
    });
  }

  // --- one room (the tile's drill-down) ---------------------------------------------------------------

  function initRoom() {
    var room = document.getElementById("room");
    var cards = {};
    room.querySelectorAll("svg.sparkline").forEach(function (svg) { drawSpark(svg, JSON.parse(svg.dataset.values || "[]")); });
    document.querySelectorAll("#devices article.device").forEach(function (c) { cards[c.dataset.deviceId] = { card: c, device: {}, alarms: {} }; });
    function paint(entry) {
      var d = entry.device, c = entry.card;
      var sev = Object.keys(entry.alarms).map(function (k) { return entry.alarms[k].severity; });
      c.dataset.health = healthOf(d, sev);
      c.classList.toggle("device-online", !!d.online);
      c.classList.toggle("device-offline", !d.online);
      c.querySelector(".state").textContent = d.revoked ? "revoked" : (d.online ? "online" : "offline");
      if ("last_seen" in d) { c.querySelector(".last-seen").replaceChildren(timeTag(d.last_seen)); }
      if ("outbox_depth" in d) { c.querySelector(".outbox").textContent = d.outbox_depth + " events"; }
      var list = c.querySelector(".alarms");
      list.replaceChildren();
      Object.keys(entry.alarms).forEach(function (id) {
        var s = el("span", "sev sev-" + entry.alarms[id].severity, alarmTypeWords(entry.alarms[id].alarm_type));
        s.dataset.alarmId = id;
        list.appendChild(s);
        list.appendChild(document.createTextNode(" "));
      });
      if (!list.childNodes.length) { list.textContent = "none"; }
      var worst = null;
      Object.keys(cards).forEach(function (id) {
        var h = cards[id].card.dataset.health;
        if (worst === null || HEALTH_RANK[h] < HEALTH_RANK[worst]) { worst = h; }
      });
      room.dataset.health = worst || "empty";
      room.querySelector(".tile-state").textContent = room.dataset.health;
    }
    liveSocket(room.dataset.ws, function (message) {
      if (message.type === "snapshot") {
        Object.keys(cards).forEach(function (id) { cards[id].alarms = {}; });
        message.devices.forEach(function (d) { if (cards[d.device_id]) { cards[d.device_id].device = d; } });
        message.alarms.forEach(function (a) { if (cards[a.device_id]) { cards[a.device_id].alarms[a.alarm_id] = a; } });
        Object.keys(cards).forEach(function (id) { paint(cards[id]); });
      } else if (cards[message.device_id] && message.type === "device") {
        Object.assign(cards[message.device_id].device, message);
        paint(cards[message.device_id]);
      } else if (cards[message.device_id] && message.type === "alarm") {
        if (ACTIVE[message.state]) { cards[message.device_id].alarms[message.alarm_id] = message; }
        else { delete cards[message.device_id].alarms[message.alarm_id]; }
        paint(cards[message.device_id]);
      }
    });
  }

  // --- device detail ----------------------------------------------------------------------------

  function alarmButtons(alarm, after) {
    var box = el("span", "row-actions");
    function button(label, action) {
      var b = el("button", "inline small", label);
      b.type = "button";
      b.dataset.action = action;
      b.addEventListener("click", function () {
        b.disabled = true;
        api("POST", "/api/v1/alarms/" + alarm.alarm_id + "/" + action, {}).then(after, function (error) {
          b.disabled = false;
          window.CampusHub.feedback(box, error.message, "error");  // beside the button pressed
        });
      });
      box.appendChild(b);
    }
    if (/_unacked$/.test(alarm.state)) { button("Ack", "ack"); }
    if (ACTIVE[alarm.state]) { button("Clear", "clear"); }
    return box;
  }

  function alarmId(a) { return a.alarm_id !== undefined ? a.alarm_id : a.id; }
  function alarmCode(a) { return a.alarm_type !== undefined ? a.alarm_type : a.type; }

  // Alarm types and states in words: web/wording.py's tables, which the ops templates put in #alarm-words
  // (the same rule as wording.alarm_type_words: "co2_high" -> "CO₂ too high"); a page without them shows codes.
  var ALARM_WORDS = (function () {
    var node = document.getElementById("alarm-words");
    try { return node ? JSON.parse(node.textContent) : null; } catch (e) { return null; }
  }());
  function alarmTypeWords(code) {
    if (!ALARM_WORDS || !code) { return code || ""; }
    if (ALARM_WORDS.types[code]) { return ALARM_WORDS.types[code]; }
    var cut = code.lastIndexOf("_"), metric = code.slice(0, cut), direction = ALARM_WORDS.directions[code.slice(cut + 1)];
    if (cut > 0 && direction) { return (ALARM_WORDS.metrics[metric] || metric) + " " + direction; }
    return code;
  }
  function metricWords(metric) { return (ALARM_WORDS && ALARM_WORDS.metrics[metric]) || metric; }
  function alarmStateWords(state) { return (ALARM_WORDS && ALARM_WORDS.states[state]) || state; }
  function alarmType(a) { return alarmTypeWords(alarmCode(a)); }

  // Command names and statuses in words: web/wording.py's device tables, which ops_device.html puts in
  // #device-words (the same as wording.command_words / command_status_words); a page without them shows codes.
  var DEVICE_WORDS = (function () {
    var node = document.getElementById("device-words");
    try { return node ? JSON.parse(node.textContent) : null; } catch (e) { return null; }
  }());
  function commandWords(name) { return (DEVICE_WORDS && DEVICE_WORDS.commands[name]) || name || ""; }
  function commandStatusWords(status) { return (DEVICE_WORDS && DEVICE_WORDS.command_statuses[status]) || status || ""; }

  function sevTag(severity) { return el("span", "sev sev-" + severity, severity); }

  // Telemetry chart: avg line over a min…max band, labelled axes (value with its unit, local time), every
  // label inside the SVG's own box (no text may hang outside the viewBox, where it would be clipped).
  function niceStep(span, count) {
    var raw = span / count, mag = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
  }

  function drawChart(box, body) {
    var points = (body && body.points) || [];
    if (!points.length) { box.replaceChildren(el("p", "empty-state", "No readings in this range. Readings appear here as the device reports them.")); return; }
    var W = 640, H = 260, L = 66, R = 18, T = 14, B = 50;
    var ts = points.map(function (p) { return new Date(p.t).getTime(); });
    var lo = Math.min.apply(null, points.map(function (p) { return p.min; }));
    var hi = Math.max.apply(null, points.map(function (p) { return p.max; }));
    if (hi === lo) { hi += 1; lo -= 1; }
    var step = niceStep(hi - lo, 4);
    lo = Math.floor(lo / step) * step;
    hi = Math.ceil(hi / step) * step;
    var digits = step >= 1 ? 0 : Math.min(3, Math.ceil(-Math.log10(step)));
    var t0 = new Date(body.from || ts[0]).getTime(), t1 = new Date(body.to || ts[ts.length - 1]).getTime();
    if (t1 <= t0) { t1 = t0 + 1; }
    function x(t) { return L + (W - L - R) * (t - t0) / (t1 - t0); }
    function y(v) { return T + (H - B - T) * (1 - (v - lo) / (hi - lo)); }
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("class", "telemetry-svg");
    svg.setAttribute("role", "img");
    var unit = body.unit || "", metricName = body.metric ? metricWords(body.metric) : "";
    svg.setAttribute("aria-label", metricName + (unit ? " (" + unit + ")" : "") + ", " + fmt(new Date(t0).toISOString())
      + " to " + fmt(new Date(t1).toISOString()) + ", from " + lo.toFixed(digits) + " to " + hi.toFixed(digits));
    function add(tag, attrs, text) {
      var n = document.createElementNS(ns, tag);
      Object.keys(attrs).forEach(function (k) { n.setAttribute(k, attrs[k]); });
      if (text !== undefined) { n.textContent = text; }
      svg.appendChild(n);
      return n;
    }
    for (var v = lo; v <= hi + step / 2; v += step) {
      add("line", { x1: L, y1: y(v), x2: W - R, y2: y(v), "class": "grid" });
      add("text", { x: L - 6, y: y(v) + 4, "class": "tick end y-tick" }, v.toFixed(digits));
    }
    var span = t1 - t0, tickEvery = [60e3, 300e3, 600e3, 900e3, 1800e3, 3600e3, 3 * 3600e3, 6 * 3600e3, 86400e3]
      .filter(function (ms) { return span / ms <= 6; })[0] || 86400e3 * 7;
    var long = span > 86400e3;
    for (var t = Math.ceil(t0 / tickEvery) * tickEvery; t <= t1; t += tickEvery) {
      var d = new Date(t);
      add("line", { x1: x(t), y1: H - B, x2: x(t), y2: H - B + 4, "class": "axis" });
      add("text", { x: Math.min(Math.max(x(t), L + 18), W - R - 18), y: H - B + 17, "class": "tick x-tick", "text-anchor": "middle" },
        long ? d.toLocaleDateString([], { day: "2-digit", month: "short" }) : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
    }
    var band = points.map(function (p, i) { return x(ts[i]) + "," + y(p.max); })
      .concat(points.slice().reverse().map(function (p, i) { return x(ts[ts.length - 1 - i]) + "," + y(p.min); }));
    add("polygon", { points: band.join(" "), "class": "band" });
    add("polyline", { points: points.map(function (p, i) { return x(ts[i]) + "," + y(p.avg); }).join(" "), "class": "avg" });
    add("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, "class": "axis" });
    add("line", { x1: L, y1: T, x2: L, y2: H - B, "class": "axis" });
    add("text", { x: (L + W - R) / 2, y: H - 8, "class": "axis-title x-title", "text-anchor": "middle" },
      "Time (" + (long ? "day" : "hour:minute") + ", local)");
    add("text", { x: 14, y: (T + H - B) / 2, "class": "axis-title y-title", "text-anchor": "middle",
      transform: "rotate(-90 14 " + (T + H - B) / 2 + ")" }, (metricName || "value") + (unit ? " (" + unit + ")" : ""));
    var last = points[points.length - 1];
    box.replaceChildren(svg, el("p", "muted", "Latest " + metricName + ": " + readingText({ value: last.avg, unit: unit }, body.metric).trim()
      + " at " + fmt(last.t) + " (line: average; band: minimum to maximum)"));
  }

  // "1080" seconds as people say it: "18 min", "3 h 5 min", "2 d 4 h".
  function duration(seconds) {
    if (seconds === null || seconds === undefined || seconds === "") { return "—"; }
    var s = Math.max(0, Math.round(Number(seconds)));
    if (s < 60) { return s + " s"; }
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d) { return d + " d " + h + " h"; }
    if (h) { return h + " h " + m + " min"; }
    return m + " min";
  }

  function initDevice() {
    var head = document.getElementById("device");
    var deviceId = head.dataset.deviceId;
    var base = "/api/v1/devices/" + encodeURIComponent(deviceId);
    var alarmsBody = document.querySelector("#device-alarms tbody");
    var commandsBody = document.querySelector("#device-commands tbody");
    var historyBody = document.querySelector("#health-history tbody");
    var metric = document.getElementById("telemetry-metric");
    var range = document.getElementById("telemetry-range");
    var chart = document.getElementById("telemetry-chart");

    function failed(body, cols) {
      return function (error) {
        var tr = el("tr");
        var td = el("td", "muted", "Unavailable: " + error.message);
        td.colSpan = cols;
        tr.appendChild(td);
        body.replaceChildren(tr);
      };
    }
    function loadAlarms() {
      api("GET", "/api/v1/alarms?state=all&limit=20&device_id=" + encodeURIComponent(deviceId)).then(function (page) {
        if (!page.items.length) {
          alarmsBody.replaceChildren(emptyRow(6, "This device has raised no alarms. Alarms appear here when a reading crosses a threshold rule or the device goes offline."));
          return;
        }
        alarmsBody.replaceChildren.apply(alarmsBody, page.items.map(function (a) {
          var tr = row([sevTag(a.severity), alarmType(a), alarmStateWords(a.state), timeTag(a.raised_at), a.message || "", alarmButtons({ alarm_id: alarmId(a), state: a.state }, loadAlarms)]);
          tr.dataset.alarmId = alarmId(a);
          tr.dataset.state = a.state;
          return tr;
        }));
      }, failed(alarmsBody, 6));
    }
    function loadCommands() {
      api("GET", base + "/commands?limit=20").then(function (page) {
        if (!page.items.length) { commandsBody.replaceChildren(emptyRow(6, "No command sent to this device yet. Send one with the form above.")); return; }
        commandsBody.replaceChildren.apply(commandsBody, page.items.map(function (c) {
          var status = el("span", "cmd cmd-" + c.status, commandStatusWords(c.status));
          var tr = row([commandWords(c.name), status, timeTag(c.created_at), timeTag(c.acked_at), c.detail || "", c.issued_by || ""]);
          tr.dataset.commandId = c.command_id || c.id;
          tr.dataset.name = c.name;  // the API's code, beside the words
          return tr;
        }));
      }, failed(commandsBody, 6));
    }
    function loadHistory() {
      api("GET", base + "/health-history?limit=20").then(function (page) {
        if (!page.items.length) { historyBody.replaceChildren(emptyRow(6, "No connection change recorded yet. Each time the device connects, disconnects or changes firmware, it is listed here.")); return; }
        historyBody.replaceChildren.apply(historyBody, page.items.map(function (h) {
          return row([timeTag(h.at), h.change, h.online ? "online" : "offline", h.reason, h.firmware, h.outbox_depth]);
        }));
      }, failed(historyBody, 6));
    }
    function loadTelemetry() {
      var q = "?range=" + encodeURIComponent(range.value) + (metric.value ? "&metric=" + encodeURIComponent(metric.value) : "");
      api("GET", base + "/telemetry" + q).then(function (body) {
        var names = body.metrics || [];
        var listed = Array.prototype.map.call(metric.options, function (o) { return o.value; }).join(",");
        if (names.length && listed !== names.map(function (m) { return typeof m === "string" ? m : m.metric; }).join(",")) {
          var chosen = metric.value || body.metric;
          metric.replaceChildren.apply(metric, names.map(function (m) {
            var name = typeof m === "string" ? m : m.metric;
            var o = el("option", null, metricWords(name));
            o.value = name;
            return o;
          }));
          metric.value = chosen || metric.value;
        }
        drawChart(chart, body);
      }, function (error) { chart.replaceChildren(el("p", "muted", "Telemetry unavailable: " + error.message)); });
    }
    function loadAll() { loadAlarms(); loadCommands(); loadHistory(); loadTelemetry(); }

    metric.addEventListener("change", loadTelemetry);
    range.addEventListener("change", loadTelemetry);
    // Readings are not on the live bus (too many): the chart catches up every 30 s while shown.
    setInterval(function () { if (!document.hidden) { loadTelemetry(); } }, 30000);

    var release = document.getElementById("quarantine-release");
    if (release) {  // POST /api/v1/devices/{id}/release (web/routes/quarantine_api.py), then show the page anew
      release.addEventListener("click", function () {
        api("POST", base + "/release", {}).then(function () { location.reload(); },
          function (e) { showError(document.getElementById("quarantine-error"), e); });
      });
    }
    document.getElementById("command-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var error = document.getElementById("command-error");
      api("POST", base + "/commands", { name: document.getElementById("command-name").value,
        ttl_s: parseInt(document.getElementById("command-ttl").value, 10) || 60 })
        .then(function () { showError(error, null); loadCommands(); }, function (e) { showError(error, e); });
    });

    function applyHead(d) {
      var state = head.querySelector(".state");
      state.textContent = d.revoked ? "revoked" : (d.online ? "online" : "offline");
      head.dataset.online = d.online ? "true" : "false";
      if ("last_seen" in d) { head.querySelector(".last-seen").replaceChildren(timeTag(d.last_seen)); }
      if ("firmware" in d) { head.querySelector(".firmware").textContent = d.firmware || "—"; }
      if ("outbox_depth" in d) { head.querySelector(".outbox").textContent = d.outbox_depth + " events"; }
      if ("reason" in d) { head.querySelector(".reason").textContent = d.reason || "—"; }
      head.querySelectorAll("[data-field]").forEach(function (dd) {
        var v = d[dd.dataset.field];
        if (v === undefined) { return; }
        if (v === null) { dd.textContent = "—"; return; }
        if (dd.dataset.field === "uptime_s") { dd.textContent = duration(v); dd.title = v + " seconds"; return; }
        dd.textContent = v + (dd.dataset.unit ? " " + dd.dataset.unit : "");
      });
    }
    var current = {};
    var activeSeverities = {};
    function recolour() {
      var sev = Object.keys(activeSeverities).map(function (k) { return activeSeverities[k]; });
      head.dataset.health = healthOf(current, sev);
    }

    liveSocket(head.dataset.ws, function (message) {
      if (message.type === "snapshot") {
        current = message.devices.filter(function (d) { return d.device_id === deviceId; })[0] || {};
        activeSeverities = {};
        message.alarms.forEach(function (a) { if (a.device_id === deviceId) { activeSeverities[a.alarm_id] = a.severity; } });
        applyHead(current);
        recolour();
        loadAll();
      } else if (message.device_id !== deviceId) {
        return;
      } else if (message.type === "device") {
        Object.assign(current, message);
        applyHead(current);
        recolour();
        loadHistory();
      } else if (message.type === "alarm") {
        if (ACTIVE[message.state]) { activeSeverities[message.alarm_id] = message.severity; } else { delete activeSeverities[message.alarm_id]; }
        recolour();
        loadAlarms();
      } else if (message.type === "command") {
        loadCommands();
      }
    });
  }

  // --- alarm list -------------------------------------------------------------------------------

  function initAlarms() {
    var table = document.getElementById("alarms");
    var body = table.tBodies[0];
    var more = document.getElementById("alarms-more");
    var error = document.getElementById("alarm-error");
    var filters = { state: document.getElementById("alarm-state"), severity: document.getElementById("alarm-severity"),
      device: document.getElementById("alarm-device") };
    var PAGE = 50, shown = 0;

    function query(offset) {
      var q = "?limit=" + PAGE + "&offset=" + offset + "&state=" + encodeURIComponent(filters.state.value);
      if (filters.severity.value) { q += "&severity=" + encodeURIComponent(filters.severity.value); }
      if (filters.device.value.trim()) { q += "&device_id=" + encodeURIComponent(filters.device.value.trim()); }
      return "/api/v1/alarms" + q;
    }
    var selected = {}, cursorId = null;
    var ackSelected = document.getElementById("alarms-ack-selected");
    var selectAll = document.getElementById("alarms-select-all");
    function alarmRow(a) {
      var id = alarmId(a);
      var device = el("a", null, a.device_id);
      device.href = "/ops/devices/" + encodeURIComponent(a.device_id);
      var box = el("input");
      box.type = "checkbox";
      box.className = "alarm-select";
      box.setAttribute("aria-label", "Select alarm " + alarmType(a) + " on " + a.device_id);
      box.checked = !!selected[id];
      box.addEventListener("change", function () { select(id, box.checked); });
      var tr = row([box, sevTag(a.severity), device, alarmType(a), alarmStateWords(a.state), timeTag(a.raised_at), a.message || "",
        alarmButtons({ alarm_id: id, state: a.state }, reload)]);
      tr.dataset.alarmId = id;
      tr.dataset.state = a.state;
      tr.className = "alarm-row sev-row-" + a.severity + (selected[id] ? " selected" : "") + (String(id) === String(cursorId) ? " cursor" : "");
      return tr;
    }
    function rows() { return Array.prototype.slice.call(body.querySelectorAll("tr.alarm-row")); }
    function select(id, on) {
      if (on) { selected[id] = true; } else { delete selected[id]; }
      var tr = byData(body, "data-alarm-id", id);
      if (tr) { tr.classList.toggle("selected", !!on); tr.querySelector("input.alarm-select").checked = !!on; }
      var n = Object.keys(selected).length;
      document.getElementById("alarms-selected").textContent = n;
      ackSelected.disabled = n === 0;
      selectAll.checked = n > 0 && n === rows().length;
    }
    function moveCursor(delta) {
      var all = rows();
      if (!all.length) { return; }
      var at = all.findIndex(function (tr) { return tr.dataset.alarmId === String(cursorId); });
      var next = all[Math.max(0, Math.min(all.length - 1, at < 0 ? 0 : at + delta))];
      all.forEach(function (tr) { tr.classList.remove("cursor"); });
      next.classList.add("cursor");
      cursorId = next.dataset.alarmId;
      next.scrollIntoView({ block: "nearest" });
    }
    function cursorRow() { return cursorId === null ? null : byData(body, "data-alarm-id", cursorId); }
    function ackMany(ids) {
      if (!ids.length) { return; }
      ackSelected.disabled = true;
      api("POST", "/api/v1/alarms/ack", { alarm_ids: ids.map(Number) }).then(function (result) {
        var refused = result.results.filter(function (r) { return !r.acked; });
        ids.forEach(function (id) { delete selected[id]; });
        window.CampusHub.feedback(ackSelected, result.acked + " acknowledged" + (refused.length ? "; " + refused.length
          + " not: " + refused.map(function (r) { return "#" + r.alarm_id + " " + r.message; }).join(", ") : "."),
          refused.length ? "error" : "success");
        return reload();
      }, function (e) { window.CampusHub.feedback(ackSelected, e.message, "error"); }).then(function () { select(null, false); });
    }
    ackSelected.addEventListener("click", function () { ackMany(Object.keys(selected)); });
    selectAll.addEventListener("change", function () {
      rows().forEach(function (tr) { select(tr.dataset.alarmId, selectAll.checked); });
    });
    document.addEventListener("keydown", function (event) {
      var target = event.target;
      if (event.ctrlKey || event.metaKey || event.altKey || document.querySelector("dialog[open]")) { return; }
      if (target.closest && target.closest("input, select, textarea, [contenteditable]") && !(target.classList && target.classList.contains("alarm-select"))) { return; }
      var tr = cursorRow();
      if (event.key === "j" || event.key === "k") { moveCursor(event.key === "j" ? 1 : -1); }
      else if (event.key === "x" && tr) { select(tr.dataset.alarmId, !selected[tr.dataset.alarmId]); }
      else if (event.key === "a" && tr) {
        var ack = tr.querySelector('button[data-action="ack"]');
        if (ack) { ack.click(); }
      }
      else if (event.key === "A") { ackMany(Object.keys(selected)); }
      else if (event.key === "o" && tr) { location.href = tr.querySelector("a").href; }
      else if (event.key === "*") { rows().forEach(function (r) { select(r.dataset.alarmId, true); }); }
      else if (event.key === "Escape") { Object.keys(selected).forEach(function (id) { select(id, false); }); }
      else { return; }
      event.preventDefault();
    });
    function load(offset) {
      return api("GET", query(offset)).then(function (page) {
        showError(error, null);
        var made = page.items.map(alarmRow);
        if (offset === 0) {
          if (!made.length) { made = [emptyRow(8, "No alarm matches these filters. New alarms appear here as they are raised.")]; }
          body.replaceChildren.apply(body, made);
          // Selections of alarms no longer listed are dropped: only what is shown can be acknowledged together.
          Object.keys(selected).forEach(function (id) { if (!byData(body, "data-alarm-id", id)) { delete selected[id]; } });
          select(null, false);
        } else { made.forEach(function (r) { body.appendChild(r); }); }
        shown = offset + page.items.length;
        document.getElementById("alarms-total").textContent = page.total;
        more.hidden = shown >= page.total;
      }, function (e) { showError(error, e); });
    }
    function reload() { return load(0); }
    var soon = debounce(reload, 250);
    Object.keys(filters).forEach(function (k) { filters[k].addEventListener("input", soon); });
    document.getElementById("alarm-filters").addEventListener("submit", function (e) { e.preventDefault(); reload(); });
    more.addEventListener("click", function () { load(shown); });

    liveSocket(table.dataset.ws, function (message) {
      if (message.type === "snapshot" || message.type === "alarm") { soon(); }
    });
  }

  // --- ticket board -----------------------------------------------------------------------------

  // [to, label, is it the destructive "cancel ticket" move]. "Close" alone only ever closes the dialog.
  var MOVES = {
    open: [["closed", "Cancel ticket…", true]],
    assigned: [["in_progress", "Start"], ["open", "Unassign"], ["closed", "Cancel ticket…", true]],
    in_progress: [["resolved", "Resolve"], ["closed", "Cancel ticket…", true]],
    resolved: [["closed", "Close ticket (fixed)"], ["in_progress", "Reopen"]],
    closed: [["open", "Reopen"]],
  };

  function ticketCard(t) {
    var article = el("article", "ticket prio-" + t.priority + (t.sla_breached ? " sla-breached" : ""));
    article.dataset.ticketId = t.id;
    article.dataset.state = t.state;
    article.dataset.updatedAt = t.updated_at;
    article.dataset.due = t.sla_due_at;
    article.dataset.finished = t.resolved_at || t.closed_at || "";
    var header = el("header");
    header.appendChild(el("span", "prio", t.priority));
    header.appendChild(document.createTextNode(" "));
    var a = el("a", "title", "#" + t.id + " " + t.title);
    a.href = "#ticket-" + t.id;
    header.appendChild(a);
    article.appendChild(header);
    article.appendChild(el("p", "where muted", [t.room_name || t.room_id || "", t.building, t.device_id].filter(Boolean).join(" · ")));
    var sla = el("p", "sla");
    if (t.sla_breached) { sla.appendChild(el("strong", "breach", "SLA breached")); } else { sla.appendChild(document.createTextNode("due")); }
    sla.appendChild(document.createTextNode(" "));
    sla.appendChild(timeTag(t.sla_due_at));
    article.appendChild(sla);
    article.appendChild(el("p", "assignee", t.assignee_name || "unassigned"));
    return article;
  }

  function initTickets() {
    var board = document.getElementById("board");
    var dialog = document.getElementById("ticket-dialog");
    var openId = null;
    var tickets = {};

    board.querySelectorAll("article.ticket").forEach(function (c) {
      var due = c.querySelector(".sla time");
      c.dataset.due = due ? due.getAttribute("datetime") : "";
    });

    function column(state) { return byData(board, "data-state", state); }
    function recount() {
      board.querySelectorAll("section.column").forEach(function (col) {
        col.querySelector(".count").textContent = col.querySelectorAll("article.ticket").length;
      });
    }
    function upsert(t) {
      tickets[t.id] = t;
      var old = byData(board, "data-ticket-id", t.id);
      if (old && old.dataset.updatedAt && t.updated_at && old.dataset.updatedAt > t.updated_at && old.dataset.state !== t.state) { return; }
      var fresh = ticketCard(t);
      var col = column(t.state);
      if (old) { old.remove(); }
      if (col) {
        var cards = col.querySelector(".cards");
        if (t.state === "closed") { cards.insertBefore(fresh, cards.firstChild); } else { cards.appendChild(fresh); sortColumn(cards); }
      }
      fresh.classList.add("flash");
      recount();
      filter();
      if (openId === t.id) { openTicket(t.id); }
    }
    function sortColumn(cards) {
      var items = Array.prototype.slice.call(cards.querySelectorAll("article.ticket"));
      items.sort(function (x, y) {
        var px = x.querySelector(".prio").textContent, py = y.querySelector(".prio").textContent;
        return px === py ? (x.dataset.due < y.dataset.due ? -1 : 1) : (px < py ? -1 : 1);
      });
      items.forEach(function (i) { cards.appendChild(i); });
    }

    var search = document.getElementById("ticket-search");
    var breachedOnly = document.getElementById("ticket-breached");
    function filter() {
      var q = search.value.trim().toLowerCase();
      board.querySelectorAll("article.ticket").forEach(function (c) {
        c.hidden = (q && c.textContent.toLowerCase().indexOf(q) < 0) || (breachedOnly.checked && !c.classList.contains("sla-breached"));
      });
    }
    search.addEventListener("input", filter);
    breachedOnly.addEventListener("change", filter);
    document.getElementById("ticket-filters").addEventListener("submit", function (e) { e.preventDefault(); });

    // The hub announces breaches; between messages the browser's clock highlights them too.
    function markBreaches() {
      var now = new Date().toISOString();
      board.querySelectorAll("article.ticket").forEach(function (c) {
        if (!c.dataset.finished && c.dataset.due && c.dataset.due <= now && !c.classList.contains("sla-breached")) {
          c.classList.add("sla-breached");
          var sla = c.querySelector(".sla");
          sla.replaceChild(el("strong", "breach", "SLA breached"), sla.firstChild);
        }
      });
    }
    setInterval(markBreaches, 30000);

    var err = document.getElementById("td-error");
    // The answer to Assign / Priority / a move goes right under those controls (CampusHub.feedback), not
    // only into the board behind the dialog; a refusal still shows in #td-error.
    var controls = document.querySelector("#ticket-dialog .actions");
    function act(promise) {
      return promise.then(function (t) {
        showError(err, null);
        if (t && t.id) {
          upsert(t);
          window.CampusHub.feedback(controls, "Ticket #" + t.id + " is now " + t.state.replace("_", " ") +
            ", priority " + t.priority + ".", "success");
        }
      }, function (e) { window.CampusHub.feedback(controls, ""); showError(err, e); });
    }
    function openTicket(id) {
      openId = id;
      api("GET", "/api/v1/tickets/" + id).then(function (t) {
        document.getElementById("td-title").textContent = "#" + t.id + " " + t.title;
        document.getElementById("td-meta").textContent = [t.priority, t.state.replace("_", " "), t.room_name || t.room_id,
          t.device_id, "due " + fmt(t.sla_due_at), t.sla_breached ? "SLA BREACHED" : "", "reported by " + (t.reporter_name || "the hub")]
          .filter(Boolean).join(" · ");
        document.getElementById("td-description").textContent = t.description || "";
        document.getElementById("td-priority").value = t.priority;
        if (t.assignee) { document.getElementById("td-assignee").value = t.assignee; }
        var moves = document.getElementById("td-moves");
        moves.replaceChildren.apply(moves, (MOVES[t.state] || []).map(function (m) {
          var b = el("button", "inline move " + (m[2] ? "btn-danger" : "btn-secondary"), m[1]);
          b.type = "button";
          b.dataset.to = m[0];
          if (m[2]) { b.dataset.cancel = "true"; }
          b.addEventListener("click", function () {
            var box = document.getElementById("td-comment");
            var comment = box.value.trim();
            var go = Promise.resolve(true);
            if (m[2]) {  // cancelling closes the ticket without a fix: a reason, then a confirmation
              if (!comment) {
                showError(err, new Error("Say why in \"Add a comment\" first: a cancelled ticket needs a reason."));
                box.focus();
                return;
              }
              go = window.CampusHub.confirmAction("Cancel ticket #" + t.id + "? It closes without a fix; your comment is the reason.",
                { confirmLabel: "Cancel ticket", cancelLabel: "Keep ticket", danger: true });
            }
            go.then(function (yes) {
              if (!yes) { return; }
              act(api("POST", "/api/v1/tickets/" + t.id + "/transition", { to: m[0], comment: comment }))
                .then(function () { box.value = ""; });
            });
          });
          return b;
        }));
        var comments = document.getElementById("td-comments");
        comments.replaceChildren.apply(comments, t.comments.map(function (c) {
          var li = el("li");
          li.appendChild(el("strong", null, c.author_name));
          li.appendChild(document.createTextNode(" "));
          li.appendChild(timeTag(c.created_at));
          li.appendChild(el("p", null, c.body));
          return li;
        }));
        var events = document.getElementById("td-events");
        events.replaceChildren.apply(events, t.events.map(function (e) {
          var li = el("li");
          li.appendChild(timeTag(e.at));
          li.appendChild(document.createTextNode(" " + e.text));  // the API's words: names, no codes
          return li;
        }));
        if (!dialog.open) { dialog.showModal(); }
      }, function (e) {  // beside the ticket's title that was clicked, not an alert box
        var title = board.querySelector('article.ticket[data-ticket-id="' + id + '"] a.title');
        if (title) { window.CampusHub.feedback(title, e.message, "error"); }
      });
    }
    dialog.addEventListener("close", function () { openId = null; showError(err, null); window.CampusHub.feedback(controls, ""); });
    board.addEventListener("click", function (event) {
      var link = event.target.closest("a.title");
      if (!link) { return; }
      event.preventDefault();
      openTicket(Number(link.closest("article.ticket").dataset.ticketId));
    });
    document.getElementById("td-assign").addEventListener("click", function () {
      act(api("POST", "/api/v1/tickets/" + openId + "/assign", { assignee: document.getElementById("td-assignee").value }));
    });
    document.getElementById("td-priority").addEventListener("change", function () {
      act(api("PATCH", "/api/v1/tickets/" + openId, { priority: document.getElementById("td-priority").value }));
    });
    document.getElementById("td-comment-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var box = document.getElementById("td-comment");
      api("POST", "/api/v1/tickets/" + openId + "/comments", { body: box.value }).then(function () {
        box.value = "";
        showError(err, null);
        openTicket(openId);
      }, function (e) { showError(err, e); });
    });
    var hash = /^#ticket-(\d+)$/.exec(location.hash);
    if (hash) { openTicket(Number(hash[1])); }

    liveSocket(board.dataset.ws, function (message) {
      if (message.type === "snapshot") {
        // Live columns come from the snapshot; the closed column keeps what it shows.
        board.querySelectorAll("section.column").forEach(function (col) {
          if (col.dataset.state !== "closed") { col.querySelector(".cards").replaceChildren(); }
        });
        message.tickets.forEach(upsert);
        recount();
      } else if (message.type === "ticket") {
        upsert(message);
      } else if (message.type === "ticket_comment" && message.ticket_id === openId) {
        openTicket(openId);
      }
    });
  }

  // --- report a problem -------------------------------------------------------------------------

  function initReport() {
    var form = document.getElementById("report-form");
    var params = new URLSearchParams(location.search);
    var room = document.getElementById("report-room");
    if (params.get("room_id")) { room.value = params.get("room_id"); }
    form.dataset.deviceId = params.get("device_id") || "";
    var error = document.getElementById("report-error");
    var done = document.getElementById("report-done");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var body = { title: document.getElementById("report-title").value, description: document.getElementById("report-description").value,
        room_id: room.value || undefined, priority: document.getElementById("report-priority").value };
      if (form.dataset.deviceId) { body.device_id = form.dataset.deviceId; }
      document.getElementById("report-submit").disabled = true;
      api("POST", "/api/v1/tickets", body).then(function (t) {
        showError(error, null);
        done.textContent = "Thanks: ticket #" + t.id + " is open, due " + fmt(t.sla_due_at) + ".";
        done.hidden = false;
        var tbody = document.querySelector("#my-reports tbody");
        var empty = tbody.querySelector("tr.empty");
        if (empty) { empty.remove(); }
        var tr = row([t.id, t.title, t.room_name || "", "Open", timeTag(t.sla_due_at)]);
        tr.dataset.ticketId = t.id;
        tbody.insertBefore(tr, tbody.firstChild);
        document.getElementById("report-title").value = "";
        document.getElementById("report-description").value = "";
      }, function (e) { showError(error, e); }).then(function () { document.getElementById("report-submit").disabled = false; });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var page = document.body.dataset.page;
    if (page === "ops-grid") { initGrid(); }
    else if (page === "ops-room") { initRoom(); }
    else if (page === "ops-device") { initDevice(); }
    else if (page === "ops-alarms") { initAlarms(); }
    else if (page === "ops-tickets") { initTickets(); }
    else if (page === "report") { initReport(); }
  });
})();
