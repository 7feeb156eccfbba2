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

  // The JSON API; rejects with the server's error message. The cookie session is refreshed
  // by the server on any request, so no retry dance is needed here.
  function api(method, path, body) {
    var options = { method: method, credentials: "same-origin", headers: { "Accept": "application/json" } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(path, options).then(function (response) {
      if (response.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); }
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var error = new Error((data.error && data.error.message) || ("HTTP " + response.status));
          error.status = response.status;
          throw error;
        }
        return data;
      });
    });
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

  // --- device grid ------------------------------------------------------------------------------

  function initGrid() {
    var grid = document.getElementById("devices");
    var devices = {}, alarms = {}, rooms = {};

    grid.querySelectorAll("article.device").forEach(function (card) {
      devices[card.dataset.deviceId] = {
        device_id: card.dataset.deviceId, room_id: card.dataset.roomId, kind: card.dataset.kind,
        online: card.classList.contains("device-online"), revoked: card.dataset.health === "revoked",
        room_name: card.querySelector(".room").firstChild.textContent.replace(/ · $/, ""),
      };
      card.querySelectorAll(".sev[data-alarm-id]").forEach(function (s) {
        alarms[s.dataset.alarmId] = { alarm_id: s.dataset.alarmId, device_id: card.dataset.deviceId,
          severity: s.className.replace(/.*sev-/, ""), alarm_type: s.textContent };
      });
    });
    grid.querySelectorAll(".room-group").forEach(function (r) {
      rooms[r.dataset.roomId] = { name: r.querySelector("h3").textContent, building: r.closest(".building").dataset.building };
    });

    function alarmsOf(deviceId) {
      return Object.keys(alarms).map(function (k) { return alarms[k]; }).filter(function (a) { return a.device_id === deviceId; });
    }

    function apply(card, d) {
      var mine = alarmsOf(d.device_id);
      card.classList.toggle("device-online", !!d.online);
      card.classList.toggle("device-offline", !d.online);
      card.dataset.health = healthOf(d, mine.map(function (a) { return a.severity; }));
      card.dataset.alarms = String(mine.length);
      card.querySelector(".state").textContent = d.revoked ? "revoked" : (d.online ? "online" : "offline");
      if ("last_seen" in d) { card.querySelector(".last-seen").replaceChildren(timeTag(d.last_seen)); }
      if ("firmware" in d) { card.querySelector(".firmware").textContent = d.firmware || "—"; }
      if ("outbox_depth" in d) { card.querySelector(".outbox").textContent = d.outbox_depth; }
      if ("reason" in d) { card.querySelector(".reason").textContent = d.reason || ""; }
      var list = card.querySelector(".alarms");
      list.replaceChildren();
      mine.forEach(function (a) {
        var s = el("span", "sev sev-" + a.severity, a.alarm_type);
        s.dataset.alarmId = a.alarm_id;
        list.appendChild(s);
        list.appendChild(document.createTextNode(" "));
      });
      if (!mine.length) { list.textContent = "—"; }
    }

    function card(d) {
      var article = el("article", "device");
      article.dataset.deviceId = d.device_id;
      article.dataset.kind = d.kind;
      article.dataset.roomId = d.room_id;
      article.dataset.building = (rooms[d.room_id] || {}).building || "";
      var h = el("h2", "device-id");
      var a = el("a", null, d.device_id);
      a.href = "/ops/devices/" + encodeURIComponent(d.device_id);
      h.appendChild(a);
      article.appendChild(h);
      var room = el("p", "room", (d.room_name || d.room_id) + " · ");
      room.appendChild(el("span", "kind", d.kind));
      article.appendChild(room);
      article.appendChild(el("p", "state"));
      var dl = el("dl");
      [["Last seen", "last-seen"], ["Firmware", "firmware"], ["Outbox", "outbox"], ["Alarms", "alarms"]].forEach(function (p) {
        dl.appendChild(el("dt", null, p[0]));
        dl.appendChild(el("dd", p[1]));
      });
      article.appendChild(dl);
      article.appendChild(el("p", "reason muted"));
      apply(article, d);
      return article;
    }

    function render() {
      var buildings = {};
      Object.keys(devices).sort().forEach(function (id) {
        var d = devices[id];
        var r = rooms[d.room_id] || { name: d.room_name || d.room_id, building: "Other" };
        var b = buildings[r.building] = buildings[r.building] || {};
        (b[d.room_id] = b[d.room_id] || { name: r.name, devices: [] }).devices.push(d);
      });
      var sections = Object.keys(buildings).sort().map(function (name) {
        var section = el("section", "building");
        section.dataset.building = name;
        section.appendChild(el("h2", null, name));
        Object.keys(buildings[name]).sort(function (x, y) {
          return buildings[name][x].name.localeCompare(buildings[name][y].name);
        }).forEach(function (roomId) {
          var r = buildings[name][roomId];
          var div = el("div", "room-group");
          div.dataset.roomId = roomId;
          div.appendChild(el("h3", null, r.name));
          var inner = el("div", "device-grid");
          r.devices.forEach(function (d) { inner.appendChild(card(d)); });
          div.appendChild(inner);
          section.appendChild(div);
        });
        return section;
      });
      grid.replaceChildren.apply(grid, sections);
      var select = document.getElementById("filter-building");
      var chosen = select.value;
      select.replaceChildren(el("option", null, "All buildings"));
      select.firstChild.value = "";
      Object.keys(buildings).sort().forEach(function (name) {
        var o = el("option", null, name);
        o.value = name;
        select.appendChild(o);
      });
      select.value = chosen;
      refresh();
    }

    function refresh() {
      var ids = Object.keys(devices);
      document.getElementById("devices-online").textContent = ids.filter(function (id) { return devices[id].online; }).length;
      document.getElementById("devices-total").textContent = ids.length;
      document.getElementById("alarm-count").textContent = Object.keys(alarms).length;
      filter();
    }

    var inputs = {
      search: document.getElementById("filter-search"), building: document.getElementById("filter-building"),
      kind: document.getElementById("filter-kind"), state: document.getElementById("filter-state"),
      alarm: document.getElementById("filter-alarm"),
    };
    function filter() {
      var q = inputs.search.value.trim().toLowerCase();
      var shown = 0;
      grid.querySelectorAll("article.device").forEach(function (c) {
        var d = devices[c.dataset.deviceId] || {};
        var text = (c.dataset.deviceId + " " + (d.room_name || "") + " " + c.dataset.building + " " + c.dataset.kind).toLowerCase();
        var state = inputs.state.value;
        var ok = (!q || text.indexOf(q) >= 0)
          && (!inputs.building.value || c.dataset.building === inputs.building.value)
          && (!inputs.kind.value || c.dataset.kind === inputs.kind.value)
          && (!state || (state === "online" && d.online) || (state === "offline" && !d.online)
              || state === "health:" + c.dataset.health)
          && (!inputs.alarm.checked || c.dataset.alarms !== "0");
        c.hidden = !ok;
        shown += ok ? 1 : 0;
      });
      grid.querySelectorAll(".room-group, .building").forEach(function (g) { g.hidden = !g.querySelector("article.device:not([hidden])"); });
      document.getElementById("no-match").hidden = shown > 0 || !Object.keys(devices).length;
    }
    Object.keys(inputs).forEach(function (k) { inputs[k].addEventListener("input", filter); });
    document.getElementById("grid-filters").addEventListener("submit", function (e) { e.preventDefault(); });

    liveSocket(grid.dataset.ws, function (message, send) {
      if (message.type === "snapshot") {
        devices = {}; alarms = {}; rooms = {};
        message.rooms.forEach(function (r) { rooms[r.room_id] = r; });
        message.devices.forEach(function (d) { devices[d.device_id] = d; });
        message.alarms.forEach(function (a) { alarms[a.alarm_id] = a; });
        render();
      } else if (message.type === "device") {
        var known = devices[message.device_id];
        if (!known) { send({ type: "resync" }); return; }  // registered after the snapshot
        Object.assign(known, message);
        var c = byData(grid, "data-device-id", message.device_id);
        if (c) { apply(c, known); c.classList.remove("flash"); void c.offsetWidth; c.classList.add("flash"); }
        refresh();
      } else if (message.type === "alarm") {
        if (ACTIVE[message.state]) { alarms[message.alarm_id] = message; } else { delete alarms[message.alarm_id]; }
        var d = devices[message.device_id];
        var target = d && byData(grid, "data-device-id", message.device_id);
        if (target) { apply(target, d); }
        refresh();
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
          window.alert(error.message);
        });
      });
      box.appendChild(b);
    }
    if (/_unacked$/.test(alarm.state)) { button("Ack", "ack"); }
    if (ACTIVE[alarm.state]) { button("Clear", "clear"); }
    return box;
  }

  function alarmId(a) { return a.alarm_id !== undefined ? a.alarm_id : a.id; }
  function alarmType(a) { return a.alarm_type !== undefined ? a.alarm_type : a.type; }

  function sevTag(severity) { return el("span", "sev sev-" + severity, severity); }

  function drawChart(box, body) {
    var points = (body && body.points) || [];
    if (!points.length) { box.replaceChildren(el("p", "muted", "No readings in this range.")); return; }
    var W = 600, H = 200, L = 44, B = 22;
    var ts = points.map(function (p) { return new Date(p.t).getTime(); });
    var lo = Math.min.apply(null, points.map(function (p) { return p.min; }));
    var hi = Math.max.apply(null, points.map(function (p) { return p.max; }));
    if (hi === lo) { hi += 1; lo -= 1; }
    var t0 = Math.min.apply(null, ts), t1 = Math.max.apply(null, ts);
    if (t1 === t0) { t1 = t0 + 1; }
    function x(t) { return L + (W - L - 8) * (t - t0) / (t1 - t0); }
    function y(v) { return 8 + (H - B - 8) * (1 - (v - lo) / (hi - lo)); }
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("class", "telemetry-svg");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", (body.metric || "") + " " + (body.range || ""));
    function add(tag, attrs, text) {
      var n = document.createElementNS(ns, tag);
      Object.keys(attrs).forEach(function (k) { n.setAttribute(k, attrs[k]); });
      if (text !== undefined) { n.textContent = text; }
      svg.appendChild(n);
      return n;
    }
    var band = points.map(function (p, i) { return x(ts[i]) + "," + y(p.max); })
      .concat(points.slice().reverse().map(function (p, i) { return x(ts[ts.length - 1 - i]) + "," + y(p.min); }));
    add("polygon", { points: band.join(" "), "class": "band" });
    add("polyline", { points: points.map(function (p, i) { return x(ts[i]) + "," + y(p.avg); }).join(" "), "class": "avg" });
    add("line", { x1: L, y1: H - B, x2: W - 8, y2: H - B, "class": "axis" });
    add("line", { x1: L, y1: 8, x2: L, y2: H - B, "class": "axis" });
    add("text", { x: L - 4, y: 14, "class": "tick end" }, hi.toFixed(1));
    add("text", { x: L - 4, y: H - B, "class": "tick end" }, lo.toFixed(1));
    add("text", { x: L, y: H - 4, "class": "tick" }, fmt(new Date(t0).toISOString()));
    add("text", { x: W - 8, y: H - 4, "class": "tick end" }, fmt(new Date(t1).toISOString()));
    var last = points[points.length - 1];
    box.replaceChildren(svg, el("p", "muted", "Latest " + (body.metric || "") + ": " + last.avg.toFixed(2) + " " + (body.unit || "")
      + " (avg, band = min…max)"));
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
        alarmsBody.replaceChildren.apply(alarmsBody, page.items.map(function (a) {
          var tr = row([sevTag(a.severity), alarmType(a), a.state.replace("_", ", "), timeTag(a.raised_at), a.message || "", alarmButtons({ alarm_id: alarmId(a), state: a.state }, loadAlarms)]);
          tr.dataset.alarmId = alarmId(a);
          tr.dataset.state = a.state;
          return tr;
        }));
      }, failed(alarmsBody, 6));
    }
    function loadCommands() {
      api("GET", base + "/commands?limit=20").then(function (page) {
        commandsBody.replaceChildren.apply(commandsBody, page.items.map(function (c) {
          var status = el("span", "cmd cmd-" + c.status, c.status);
          var tr = row([c.name, status, timeTag(c.created_at), timeTag(c.acked_at), c.detail || "", c.issued_by || ""]);
          tr.dataset.commandId = c.command_id || c.id;
          return tr;
        }));
      }, failed(commandsBody, 6));
    }
    function loadHistory() {
      api("GET", base + "/health-history?limit=20").then(function (page) {
        historyBody.replaceChildren.apply(historyBody, page.items.map(function (h) {
          return row([timeTag(h.at), h.change, h.online ? "online" : "offline", h.reason, h.firmware, h.outbox_depth]);
        }));
      }, failed(historyBody, 6));
    }
    function loadTelemetry() {
      var q = "?range=" + encodeURIComponent(range.value) + (metric.value ? "&metric=" + encodeURIComponent(metric.value) : "");
      api("GET", base + "/telemetry" + q).then(function (body) {
        var names = body.metrics || [];
        if (names.length && metric.options.length !== names.length) {
          var chosen = metric.value || body.metric;
          metric.replaceChildren.apply(metric, names.map(function (m) {
            var name = typeof m === "string" ? m : m.metric;
            var o = el("option", null, name);
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
      if ("outbox_depth" in d) { head.querySelector(".outbox").textContent = d.outbox_depth; }
      if ("reason" in d) { head.querySelector(".reason").textContent = d.reason || "—"; }
      head.querySelectorAll("[data-field]").forEach(function (dd) {
        var v = d[dd.dataset.field];
        if (v !== undefined) { dd.textContent = v === null ? "—" : v; }
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
    function alarmRow(a) {
      var id = alarmId(a);
      var device = el("a", null, a.device_id);
      device.href = "/ops/devices/" + encodeURIComponent(a.device_id);
      var tr = row([sevTag(a.severity), device, alarmType(a), a.state.replace("_", ", "), timeTag(a.raised_at), a.message || "",
        alarmButtons({ alarm_id: id, state: a.state }, reload)]);
      tr.dataset.alarmId = id;
      tr.dataset.state = a.state;
      tr.className = "alarm-row sev-row-" + a.severity;
      return tr;
    }
    function load(offset) {
      return api("GET", query(offset)).then(function (page) {
        showError(error, null);
        var rows = page.items.map(alarmRow);
        if (offset === 0) { body.replaceChildren.apply(body, rows); } else { rows.forEach(function (r) { body.appendChild(r); }); }
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

  var MOVES = {
    open: [["closed", "Cancel"]],
    assigned: [["in_progress", "Start"], ["open", "Unassign"], ["closed", "Cancel"]],
    in_progress: [["resolved", "Resolve"], ["closed", "Cancel"]],
    resolved: [["closed", "Close"], ["in_progress", "Reopen"]],
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
    function act(promise) {
      return promise.then(function (t) { showError(err, null); if (t && t.id) { upsert(t); } }, function (e) { showError(err, e); });
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
          var b = el("button", "inline move", m[1]);
          b.type = "button";
          b.dataset.to = m[0];
          b.addEventListener("click", function () {
            var comment = document.getElementById("td-comment").value.trim();
            if (m[1] === "Cancel" && !comment) { comment = (window.prompt("Why is it closed without a fix?") || "").trim(); if (!comment) { return; } }
            act(api("POST", "/api/v1/tickets/" + t.id + "/transition", { to: m[0], comment: comment }))
              .then(function () { document.getElementById("td-comment").value = ""; });
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
          li.appendChild(document.createTextNode(" " + e.kind + (e.to_state && e.to_state !== e.from_state ? " → " + e.to_state : "") + " by " + e.actor));
          return li;
        }));
        if (!dialog.open) { dialog.showModal(); }
      }, function (e) { window.alert(e.message); });
    }
    dialog.addEventListener("close", function () { openId = null; showError(err, null); });
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
    else if (page === "ops-device") { initDevice(); }
    else if (page === "ops-alarms") { initAlarms(); }
    else if (page === "ops-tickets") { initTickets(); }
    else if (page === "report") { initReport(); }
  });
})();
