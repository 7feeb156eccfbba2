// CampusHub insights: the unread badge and notification centre (live over /ws/me), the student's
// standings (refreshed when an attendance notification arrives), charts, condonation forms.
(function () {
  "use strict";

  var el = window.CampusHub.el;  // app.js's element helper

  var api = window.CampusHub.api;  // app.js: the one JSON API call

  // --- the badge and the live feed (every page with a logged-in user) ------------------------

  var unread = 0;
  var listeners = [];

  function setUnread(n) {
    unread = Math.max(0, n);
    var badge = document.getElementById("unread-badge");
    if (badge) { badge.textContent = unread > 99 ? "99+" : String(unread); badge.hidden = unread === 0; badge.dataset.unread = String(unread); }
    var count = document.getElementById("unread-count");
    if (count) { count.textContent = String(unread); }
    var all = document.getElementById("read-all");
    if (all) { all.disabled = unread === 0; }
  }

  function connect() {
    var delay = 1000;
    var socket;
    var indicator = document.body.dataset.page === "notifications" ? document.getElementById("live-status") : null;
    function state(s) {
      if (indicator) { indicator.dataset.state = s; indicator.textContent = { connecting: "connecting…", live: "live", offline: "reconnecting…" }[s]; }
    }
    function open() {
      state("connecting");
      socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/me");
      socket.onmessage = function (event) {
        var m;
        try { m = JSON.parse(event.data); } catch (e) { return; }
        if (m.type === "snapshot") { delay = 1000; state("live"); setUnread(m.unread); }
        else if (m.type === "notification") { if (!m.notification.read) { setUnread(unread + 1); } }
        else if (m.type === "unread") { setUnread(m.unread); }
        listeners.forEach(function (f) { f(m); });
      };
      socket.onclose = function (event) {
        state("offline");
        if (event.code === 4401 || event.code === 1008) {
          // expired token: a plain API call refreshes the cookie session first (a 401: logged out, stay offline)
          api("GET", "/api/v1/me").then(retry, function (e) { if (e.status !== 401) { retry(); } });
          return;
        }
        retry();
      };
    }
    function retry() { setTimeout(open, delay + Math.random() * 500); delay = Math.min(delay * 2, 30000); }
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && socket && socket.readyState === WebSocket.OPEN) { socket.send(JSON.stringify({ type: "resync" })); }
    });
    open();
  }

  // --- notification centre ---------------------------------------------------------------------

  function notificationItem(n) {
    var li = el("li", "notification" + (n.read ? "" : " unread"));
    li.dataset.id = n.id; li.dataset.kind = n.kind;
    var main = el("div", "notification-main");
    var title = el("strong", "title");
    if (n.link) { var a = el("a", null, n.title); a.href = n.link; title.appendChild(a); } else { title.textContent = n.title; }
    main.appendChild(title);
    main.appendChild(el("p", "body", n.body));
    var meta = el("p", "meta muted");
    meta.appendChild(el("span", "kind", n.kind.replace(/_/g, " ")));
    meta.appendChild(document.createTextNode(" · " + new Date(n.created_at).toLocaleString([], { day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit" })));
    main.appendChild(meta);
    li.appendChild(main);
    if (!n.read) { li.appendChild(el("button", "mark-read button-inline", "Mark read")); li.lastChild.type = "button"; }
    return li;
  }

  function initNotifications() {
    var list = document.getElementById("notification-list");
    list.addEventListener("click", function (event) {
      var button = event.target.closest(".mark-read");
      if (!button) { return; }
      var li = button.closest("li");
      button.disabled = true;
      api("POST", "/api/v1/notifications/" + li.dataset.id + "/read", {}).then(function () {
        li.classList.remove("unread"); button.remove();
      }, function () { button.disabled = false; });
    });
    document.getElementById("read-all").addEventListener("click", function () {
      api("POST", "/api/v1/notifications/read-all", {}).then(function () {
        list.querySelectorAll("li.unread").forEach(function (li) { li.classList.remove("unread"); });
        list.querySelectorAll(".mark-read").forEach(function (b) { b.remove(); });
        setUnread(0);
      }, function () { /* nothing changed: the buttons stay for another try */ });
    });
    listeners.push(function (m) {
      if (m.type === "notification" && !list.querySelector('li[data-id="' + m.notification.id + '"]')) {
        list.insertBefore(notificationItem(m.notification), list.firstChild);
        document.getElementById("empty-note").hidden = true;
      }
    });
  }

  // --- student: standings, charts, condonation ----------------------------------------------------

  function pctText(v) { return v === null || v === undefined ? "—" : v.toFixed(2) + "%"; }
  var ELIGIBILITY = { eligible: "Eligible", condoned: "Eligible (condoned)", condonable: "Condonable", barred: "Barred" };

  function initStudent() {
    var section = document.getElementById("standings");
    if (!section) { return; }
    var studentId = section.dataset.studentId;
    function drawCharts() { section.querySelectorAll("svg.chart").forEach(function (svg) { window.CampusCharts.load(svg); }); }

    function refresh() {
      api("GET", "/api/v1/students/" + encodeURIComponent(studentId) + "/standing").then(function (standing) {
        standing.courses.forEach(function (st) {
          var card = section.querySelector('article[data-course-id="' + CSS.escape(st.course_id) + '"]');
          if (!card) { return; }
          card.className = "card standing band-" + st.band;
          function set(field, text) { var n = card.querySelector('[data-field="' + field + '"]'); if (n) { n.textContent = text; } }
          set("percentage", pctText(st.percentage));
          set("max_reachable", pctText(st.max_reachable));
          ["held", "remaining", "present", "late", "absent", "excused"].forEach(function (k) { set(k, st.counts[k]); });
          var badge = card.querySelector('[data-field="eligibility"]');
          badge.className = "band-badge eligibility eligibility-" + st.eligibility;
          badge.textContent = ELIGIBILITY[st.eligibility] || st.eligibility;
        });
        drawCharts();
      }, function () { /* the cards keep their last figures; the next change asks again */ });
    }

    drawCharts();
    listeners.push(function (m) {
      if (m.type === "notification" && (m.notification.kind === "attendance_marked" || m.notification.kind === "attendance_warning"
          || m.notification.kind === "correction_decided" || m.notification.kind === "leave_decided" || m.notification.kind === "condonation_decided")) {
        refresh();
      } else if (m.type === "snapshot") {
        refresh();  // after a reconnect something may have changed meanwhile
      }
    });

    section.addEventListener("submit", function (event) {
      var form = event.target.closest(".condonation-form");
      if (!form) { return; }
      event.preventDefault();
      var error = form.querySelector(".form-error");
      var button = form.querySelector("button");
      button.disabled = true;
      api("POST", "/api/v1/condonations", { course_id: form.dataset.courseId, reason: form.elements.reason.value }).then(function (application) {
        var p = el("p", null, "Condonation application: ");
        p.appendChild(el("strong", "condonation-state", application.state));
        form.replaceWith(p);
      }, function (e) {
        error.textContent = e.message; error.hidden = false; button.disabled = false;
      });
    });
  }

  // --- faculty reports -------------------------------------------------------------------------------

  function initReports() {
    document.querySelectorAll("select.auto-submit").forEach(function (select) {
      select.addEventListener("change", function () {
        if (select.id === "course-pick") { var s = document.getElementById("section-pick"); if (s) { s.value = ""; } }
        select.form.submit();
      });
    });
    var chart = document.getElementById("course-chart");
    if (chart) { window.CampusCharts.load(chart); }
    var apps = document.getElementById("condonations");
    if (!apps) { return; }
    apps.addEventListener("click", function (event) {
      var button = event.target.closest(".decide-button");
      if (!button) { return; }
      var li = button.closest("li");
      li.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
      api("POST", "/api/v1/condonations/" + li.dataset.id + "/decision", { decision: button.dataset.decision }).then(function (application) {
        li.querySelector(".decide").replaceWith(el("p", "decided status", application.state));
      }, function (e) {
        var error = li.querySelector(".form-error");
        error.textContent = e.message; error.hidden = false;
        li.querySelectorAll("button").forEach(function (b) { b.disabled = false; });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var page = document.body.dataset.page;
    if (page === "notifications") { initNotifications(); }
    else if (page === "student") { initStudent(); }
    else if (page === "faculty-reports") { initReports(); }
    if (document.getElementById("nav-notifications")) { connect(); }
  });
})();
