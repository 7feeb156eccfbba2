// CampusHub pages: live updates over websockets. Plain ES2017, no build step.
// Every page declares itself with <body data-page="...">; pages are rendered
// server-side and this script only keeps them current.
(function () {
  "use strict";

  var LABELS = { "present": "present", "late": "late", "absent": "absent", "excused": "excused", "not-yet": "not yet" };

  function fmt(iso, format) {
    if (!iso) { return "—"; }
    var d = new Date(iso);
    if (isNaN(d)) { return iso; }
    var opts = format === "datetime"
      ? { day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit" }
      : { hour: "2-digit", minute: "2-digit" };
    return d.toLocaleString([], opts);
  }

  function timeTag(iso, format) {
    if (!iso) { var dash = document.createElement("span"); dash.className = "muted"; dash.textContent = "—"; return dash; }
    var t = document.createElement("time");
    t.setAttribute("datetime", iso);
    t.dataset.format = format || "time";
    t.textContent = fmt(iso, t.dataset.format);
    return t;
  }

  function localizeTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) { t.textContent = fmt(t.getAttribute("datetime"), t.dataset.format); });
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function setStatus(cell, status) {
    cell.className = "status status-" + status;
    cell.dataset.status = status;
    cell.textContent = LABELS[status] || status;
  }

  function byData(root, attr, value) {
    return root.querySelector("[" + attr + "=\"" + CSS.escape(String(value)) + "\"]");
  }

  // One websocket that reconnects with backoff. On any close it first asks
  // /api/v1/me: that refreshes an expired cookie session (websocket
  // handshakes cannot), or tells us to log in again.
  function liveSocket(path, onMessage) {
    var indicator = document.getElementById("live-status");
    var socket = null;
    var delay = 1000;
    function setState(state) {
      if (!indicator) { return; }
      indicator.dataset.state = state;
      indicator.textContent = { connecting: "connecting…", live: "live", offline: "reconnecting…" }[state];
    }
    function send(message) {
      if (socket && socket.readyState === WebSocket.OPEN) { socket.send(JSON.stringify(message)); }
    }
    function connect() {
      setState("connecting");
      socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + path);
      socket.onmessage = function (event) {
        var message;
        try { message = JSON.parse(event.data); } catch (e) { return; }
        if (message.type === "snapshot") { setState("live"); delay = 1000; }
        onMessage(message, send);
      };
      socket.onclose = function () {
        setState("offline");
        fetch("/api/v1/me", { credentials: "same-origin" }).then(function (response) {
          if (response.status === 401) {
            location.href = "/login?next=" + encodeURIComponent(location.pathname);
            return;
          }
          schedule();
        }, schedule);
      };
    }
    function schedule() {
      setTimeout(connect, delay + Math.random() * 500);
      delay = Math.min(delay * 2, 30000);
    }
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) { send({ type: "resync" }); }  // phones pause background tabs
    });
    connect();
  }
  // Shared with the other page scripts (loaded after this one, all deferred): one websocket
  // client and one element helper.
  window.CampusHub = { liveSocket: liveSocket, el: el };

  // --- faculty: live roster ---------------------------------------------------

  function initRoster() {
    var table = document.getElementById("roster");
    var tbody = table.tBodies[0];
    var sessionId = table.dataset.sessionId;

    function updateCounts() {
      var counts = { present: 0, late: 0, missing: 0, enrolled: 0 };
      tbody.querySelectorAll("td.status").forEach(function (cell) {
        var s = cell.dataset.status;
        counts.enrolled += 1;
        if (s === "present" || s === "late") { counts[s] += 1; }
        else if (s === "not-yet" || s === "absent") { counts.missing += 1; }
      });
      Object.keys(counts).forEach(function (key) {
        var node = document.getElementById("count-" + key);
        if (node) { node.textContent = counts[key]; }
      });
    }

    function row(student) {
      var tr = el("tr", "roster-row");
      tr.dataset.studentId = student.student_id;
      tr.appendChild(el("td", "name", student.name));
      tr.appendChild(el("td", "roll", student.roll_number));
      var status = el("td");
      setStatus(status, student.status);
      tr.appendChild(status);
      var at = el("td", "checked-in");
      at.appendChild(timeTag(student.checked_in_at));
      tr.appendChild(at);
      return tr;
    }

    liveSocket(table.dataset.ws, function (message, send) {
      // roster.js (flags panel) follows the same feed: one socket per page.
      document.dispatchEvent(new CustomEvent("roster-message", { detail: message }));
      if (message.type === "snapshot") {
        var fresh = document.createElement("tbody");
        message.students.forEach(function (s) { fresh.appendChild(row(s)); });
        table.replaceChild(fresh, tbody);
        tbody = fresh;
        updateCounts();
      } else if (message.type === "attendance" && message.session_id === sessionId) {
        var tr = byData(tbody, "data-student-id", message.student_id);
        if (!tr) { send({ type: "resync" }); return; }  // enrolled after the snapshot
        setStatus(tr.querySelector("td.status"), message.status);
        var at = tr.querySelector("td.checked-in");
        at.replaceChildren(timeTag(message.checked_in_at));
        tr.classList.remove("flash"); void tr.offsetWidth; tr.classList.add("flash");
        updateCounts();
      } else if (message.type === "roster" && message.session_id === sessionId) {
        // Enrolled (or reactivated) students join, deactivated ones leave: no reload needed.
        message.removed.forEach(function (id) {
          var gone = byData(tbody, "data-student-id", id);
          if (gone) { gone.remove(); }
        });
        message.added.forEach(function (s) {
          var old = byData(tbody, "data-student-id", s.student_id);
          if (old) { old.replaceWith(row(s)); } else { tbody.appendChild(row(s)); }
        });
        updateCounts();
      }
    });
  }

  // --- ops: device grid ---------------------------------------------------------

  function initDevices() {
    var grid = document.getElementById("devices");

    function apply(card, d) {
      if ("online" in d) {
        card.classList.toggle("device-online", !!d.online);
        card.classList.toggle("device-offline", !d.online);
        card.querySelector(".state").textContent = d.online ? "online" : "offline";
      }
      if ("last_seen" in d) { card.querySelector(".last-seen").replaceChildren(timeTag(d.last_seen, "datetime")); }
      if ("firmware" in d) { card.querySelector(".firmware").textContent = d.firmware || "—"; }
      if ("outbox_depth" in d) { card.querySelector(".outbox").textContent = d.outbox_depth; }
      if ("reason" in d) { card.querySelector(".reason").textContent = d.reason || ""; }
    }

    function card(d) {
      var article = el("article", "device" + (d.revoked ? " device-revoked" : ""));
      article.dataset.deviceId = d.device_id;
      article.appendChild(el("h2", "device-id", d.device_id));
      var room = el("p", "room", d.room_name + " · ");
      room.appendChild(el("span", "kind", d.kind));
      article.appendChild(room);
      article.appendChild(el("p", "state"));
      var dl = el("dl");
      [["Last seen", "last-seen"], ["Firmware", "firmware"], ["Outbox", "outbox"]].forEach(function (pair) {
        dl.appendChild(el("dt", null, pair[0]));
        dl.appendChild(el("dd", pair[1]));
      });
      article.appendChild(dl);
      article.appendChild(el("p", "reason muted"));
      apply(article, d);
      return article;
    }

    function updateCounts() {
      document.getElementById("devices-online").textContent = grid.querySelectorAll(".device-online").length;
      document.getElementById("devices-total").textContent = grid.querySelectorAll(".device").length;
    }

    liveSocket(grid.dataset.ws, function (message, send) {
      if (message.type === "snapshot") {
        grid.replaceChildren.apply(grid, message.devices.map(card));
        updateCounts();
      } else if (message.type === "device") {
        var existing = byData(grid, "data-device-id", message.device_id);
        if (!existing) { send({ type: "resync" }); return; }  // registered after the snapshot
        apply(existing, message);
        updateCounts();
      }
    });
  }

  // --- student: rotating QR and own attendance -------------------------------

  function initStudent() {
    var img = document.getElementById("qr");
    var every = parseInt(img.dataset.refreshMs, 10) || 5000;
    setInterval(function () {
      if (!document.hidden) { img.src = "/student/qr.svg?t=" + Date.now(); }
    }, every);
    img.addEventListener("error", function () {
      fetch("/api/v1/me", { credentials: "same-origin" }).then(function (r) {
        if (r.status === 401) { location.href = "/login?next=/student"; }
      });
    });

    var section = document.getElementById("attendance");
    var toast = document.getElementById("checkin-toast");

    function recount(article) {  // same rule as the server: not-yet sessions do not count yet
      var attended = 0, total = 0;
      article.querySelectorAll("td.status").forEach(function (cell) {
        var s = cell.dataset.status;
        if (s !== "not-yet") { total += 1; }
        if (s === "present" || s === "late" || s === "excused") { attended += 1; }
      });
      var node = article.querySelector(".attended");
      if (node) { node.textContent = attended + "/" + total; }
    }
    liveSocket(section.dataset.ws, function (message, send) {
      if (message.type === "snapshot") {
        var stale = false;
        message.courses.forEach(function (course) {
          var article = byData(section, "data-course-id", course.course_id);
          if (!article) { stale = true; return; }
          course.sessions.forEach(function (s) {
            var tr = byData(article, "data-session-id", s.session_id);
            if (tr) { setStatus(tr.querySelector("td.status"), s.status); }
            else { stale = true; }  // a session opened since this page was rendered
          });
          recount(article);
        });
        if (stale) { location.reload(); }  // the server renders new rows; reloading is simplest
      } else if (message.type === "attendance") {
        var tr = byData(section, "data-session-id", message.session_id);
        if (tr) {
          setStatus(tr.querySelector("td.status"), message.status);
          tr.querySelector("td.checked-in").replaceChildren(timeTag(message.checked_in_at));
          recount(tr.closest("article"));
        } else {
          send({ type: "resync" });
        }
        toast.textContent = "Checked in: " + (LABELS[message.status] || message.status) + " at " + fmt(message.checked_in_at);
        toast.hidden = false;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localizeTimes(document);
    var page = document.body.dataset.page;
    if (page === "faculty-session") { initRoster(); }
    else if (page === "ops") { initDevices(); }
    else if (page === "student") { initStudent(); }
  });
})();
