// Admin academic console (/admin/academic) and the faculty session actions on /faculty.
// Plain ES2017, no build step. Everything goes through the JSON API with the
// browser's cookies; POST/PUT bodies are JSON (the API's CSRF defence).
(function () {
  "use strict";

  function byId(id) { return document.getElementById(id); }
  function el(tag, text, className) {
    var n = document.createElement(tag);
    if (text !== undefined && text !== null) { n.textContent = String(text); }
    if (className) { n.className = className; }
    return n;
  }

  function say(message, isError) {
    var box = byId("ac-message");
    if (!box) { if (message) { window.alert(message); } return; }
    box.textContent = message || "";
    box.className = "ac-message" + (isError ? " ac-error" : "");
    box.hidden = !message;
  }

  async function api(method, path, body, contentType) {
    var init = { method: method, credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      init.headers["Content-Type"] = contentType || "application/json";
      init.body = contentType ? body : JSON.stringify(body);
    }
    var response = await fetch(path, init);
    var data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      var err = new Error((data && data.error && data.error.message) || ("HTTP " + response.status));
      err.status = response.status;
      err.data = data;
      throw err;
    }
    return data;
  }

  function row(cells, extra) {
    var tr = el("tr");
    cells.forEach(function (c) { var td = el("td"); if (c instanceof Node) { td.appendChild(c); } else { td.textContent = c === null || c === undefined ? "—" : String(c); } tr.appendChild(td); });
    if (extra) { var td = el("td"); td.appendChild(extra); tr.appendChild(td); }
    return tr;
  }

  function fill(tbodyId, items, toCells) {
    var body = byId(tbodyId);
    body.textContent = "";
    if (!items.length) { var tr = el("tr"); var td = el("td", "None yet.", "muted"); td.colSpan = 7; tr.appendChild(td); body.appendChild(tr); return; }
    items.forEach(function (item) { body.appendChild(toCells(item)); });
  }

  function button(label, onClick) {
    var b = el("button", label, "small"); b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  }

  function formBody(form, numeric) {
    var body = {};
    Array.prototype.forEach.call(form.elements, function (input) {
      if (!input.name || input.type === "file" || input.type === "submit") { return; }
      if (input.type === "checkbox") { return; }
      if (input.value === "") { return; }
      body[input.name] = (numeric || []).indexOf(input.name) >= 0 ? Number(input.value) : input.value;
    });
    return body;
  }

  function onSubmit(id, handler) {
    var form = byId(id);
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      // A handler may return a sentence saying what its change did (e.g. to sessions).
      try { say((await handler(form)) || ""); } catch (e) { say(e.message, true); }
    });
  }

  // --- admin console ---------------------------------------------------------------

  var WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
  var state = { terms: [], courses: [], rooms: [], sections: [] };

  function options(selector, items, value, label) {
    document.querySelectorAll(selector).forEach(function (select) {
      var keep = select.value;
      select.textContent = "";
      if (select.id === "timetable-term" || select.closest("#import-form")) { select.appendChild(el("option", "—")).value = ""; }
      items.forEach(function (item) { var o = el("option", label(item)); o.value = value(item); select.appendChild(o); });
      if (keep) { select.value = keep; }
    });
  }

  async function loadAll() {
    var [terms, holidays, rooms, courses, sections, assignments] = await Promise.all([
      api("GET", "/api/v1/terms?limit=500"), api("GET", "/api/v1/holidays?limit=500"),
      api("GET", "/api/v1/rooms?limit=500"), api("GET", "/api/v1/courses?limit=500"),
      api("GET", "/api/v1/sections?limit=500"), api("GET", "/api/v1/faculty-assignments?limit=500")]);
    state.terms = terms.items; state.rooms = rooms.items; state.courses = courses.items; state.sections = sections.items;
    fill("terms-body", terms.items, function (t) {
      return row([t.id, t.name, t.starts_on, t.ends_on, t.timezone]);
    });
    fill("holidays-body", holidays.items, function (h) {
      return row([h.name, h.starts_on, h.ends_on], button("Delete", async function () {
        try { var r = await api("DELETE", "/api/v1/holidays/" + h.id); await loadAll(); say("Holiday deleted. " + r.message); } catch (e) { say(e.message, true); }
      }));
    });
    fill("rooms-body", rooms.items, function (r) { return row([r.id, r.name, r.building, r.room_type, r.capacity]); });
    fill("courses-body", courses.items, function (c) { return row([c.code, c.title, c.faculty_name, c.enrolled]); });
    fill("sections-body", sections.items, function (s) { return row([s.id, s.course_code, s.term_id, s.name, s.enrolled]); });
    fill("assignments-body", assignments.items, function (a) {
      return row([a.course_code, a.faculty_name, a.section_id, a.role], button("Remove", async function () {
        try { await api("DELETE", "/api/v1/faculty-assignments/" + a.id); await loadAll(); } catch (e) { say(e.message, true); }
      }));
    });
    options(".term-select", state.terms, function (t) { return t.id; }, function (t) { return t.name; });
    options(".course-select", state.courses, function (c) { return c.id; }, function (c) { return c.code + " " + c.title; });
    options(".room-select", state.rooms, function (r) { return r.id; }, function (r) { return r.name + " (" + r.building + ")"; });
    await loadSlots();
    await loadRules();
  }

  async function loadSlots() {
    var term = byId("timetable-term").value;
    var sections = state.sections.filter(function (s) { return !term || s.term_id === term; });
    options("#slot-section", sections, function (s) { return s.id; }, function (s) { return s.course_code + " " + s.name; });
    var slots = await api("GET", "/api/v1/timetable-slots?limit=500" + (term ? "&term_id=" + encodeURIComponent(term) : ""));
    fill("slots-body", slots.items, function (s) {
      return row([WEEKDAYS[s.weekday], s.starts_time + "–" + s.ends_time, s.course_code, s.section_name, s.room_name, s.kind],
        button("Delete", async function () {
          if (!window.confirm("Delete this slot? Its future sessions are removed.")) { return; }
          try { var r = await api("DELETE", "/api/v1/timetable-slots/" + encodeURIComponent(s.id)); say("Slot deleted; " + r.deleted + " sessions removed, " + r.cancelled + " cancelled."); await loadSlots(); } catch (e) { say(e.message, true); }
        }));
    });
    await loadTermSessions(term);
  }

  // The term's next sessions, so a change to the timetable shows at once.
  async function loadTermSessions(term) {
    var box = byId("term-sessions");
    box.hidden = !term;
    if (!term) { return; }
    var page = await api("GET", "/api/v1/sessions?limit=20&term_id=" + encodeURIComponent(term) +
      "&from=" + encodeURIComponent(new Date().toISOString()));
    byId("term-sessions-total").textContent = page.total;
    fill("term-sessions-body", page.items, function (s) {
      var tr = row([new Date(s.starts_at).toLocaleString([], { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" }),
        s.course_code, s.section_name, s.room_name, s.status + (s.cancel_reason ? " (" + s.cancel_reason + ")" : "")]);
      tr.dataset.sessionId = s.session_id;
      return tr;
    });
  }

  async function loadRules() {
    var course = byId("rules-course").value;
    if (!course) { return; }
    var rules = await api("GET", "/api/v1/courses/" + encodeURIComponent(course) + "/rules");
    var form = byId("rules-form");
    Object.keys(rules).forEach(function (k) { if (form.elements[k] && k !== "course_id") { form.elements[k].value = rules[k]; } });
  }

  async function generate(dryRun) {
    var term = byId("timetable-term").value;
    if (!term) { say("Choose a term first.", true); return; }
    try {
      var r = await api("POST", "/api/v1/terms/" + encodeURIComponent(term) + "/generate" + (dryRun ? "?dry_run=1" : ""));
      byId("generate-result").textContent = (dryRun ? "Would create " : "Created ") + r.created + ", update " + r.updated +
        ", delete " + r.deleted + ", cancel " + r.cancelled + ", restore " + r.restored + "; kept " + r.kept +
        "; skipped for holidays " + r.skipped_holidays + ".";
      if (!dryRun) { await loadTermSessions(term); }
    } catch (e) { say(e.message, true); }
  }

  function showImport(result, error) {
    byId("import-result").hidden = false;
    var body = byId("import-errors").querySelector("tbody");
    body.textContent = "";
    if (error) {
      byId("import-summary").textContent = error.message;
      ((error.data && error.data.errors) || []).forEach(function (e) { body.appendChild(row([e.line, e.field, e.reason])); });
      byId("import-errors").hidden = !body.children.length;
      return;
    }
    byId("import-errors").hidden = true;
    byId("import-summary").textContent = (result.dry_run ? "Valid: would import " : "Imported ") + result.rows +
      " rows (" + result.created + " new, " + result.moved + " moved, " + result.unchanged + " unchanged).";
  }

  function initAdmin() {
    onSubmit("term-form", async function (form) { await api("POST", "/api/v1/terms", formBody(form)); form.reset(); await loadAll(); });
    onSubmit("holiday-form", async function (form) { var r = await api("POST", "/api/v1/holidays", formBody(form)); form.reset(); await loadAll(); return "Holiday added. " + r.message; });
    onSubmit("room-form", async function (form) { await api("POST", "/api/v1/rooms", formBody(form, ["capacity"])); form.reset(); await loadAll(); });
    onSubmit("course-form", async function (form) { await api("POST", "/api/v1/courses", formBody(form)); form.reset(); await loadAll(); });
    onSubmit("section-form", async function (form) { await api("POST", "/api/v1/sections", formBody(form)); form.elements.name.value = ""; await loadAll(); });
    onSubmit("assignment-form", async function (form) { await api("POST", "/api/v1/faculty-assignments", formBody(form)); await loadAll(); });
    onSubmit("slot-form", async function (form) { var r = await api("POST", "/api/v1/timetable-slots", formBody(form, ["weekday"])); await loadSlots(); return "Slot added. " + r.message; });
    onSubmit("rules-form", async function (form) {
      var body = formBody(form, ["grace_minutes", "late_cutoff_minutes", "opens_minutes_before", "late_weight", "warning_pct", "eligible_pct", "condonable_pct"]);
      delete body.course_id;
      await api("PUT", "/api/v1/courses/" + encodeURIComponent(form.elements.course_id.value) + "/rules", body);
      return "Rules saved.";
    });
    var importForm = byId("import-form");
    importForm.addEventListener("submit", async function (event) {
      event.preventDefault();
      var file = importForm.elements.file.files[0];
      if (!file) { return; }
      var query = [];
      if (importForm.elements.term_id.value) { query.push("term_id=" + encodeURIComponent(importForm.elements.term_id.value)); }
      if (importForm.elements.dry_run.checked) { query.push("dry_run=1"); }
      try {
        var result = await api("POST", "/api/v1/enrolments/import" + (query.length ? "?" + query.join("&") : ""), await file.text(), "text/csv");
        showImport(result, null);
        if (!result.dry_run) { await loadAll(); }
      } catch (e) { showImport(null, e); }
    });
    byId("timetable-term").addEventListener("change", function () { loadSlots().catch(function (e) { say(e.message, true); }); });
    byId("rules-course").addEventListener("change", function () { loadRules().catch(function (e) { say(e.message, true); }); });
    byId("generate").addEventListener("click", function () { generate(false); });
    byId("generate-dry").addEventListener("click", function () { generate(true); });
    initCheckinNetworks();
    loadAll().then(loadCheckinNetworks).catch(function (e) { say(e.message, true); });
  }

  // --- check-in networks: flagged for review when outside, never refused (docs/checkin.md) ---

  function rangeList(text) { return text.split(/[\s,]+/).filter(Boolean); }

  function roomNetworksUrl() {
    return "/api/v1/rooms/" + encodeURIComponent(byId("network-room").value) + "/checkin-networks";
  }

  async function loadCheckinNetworks() {
    var campus = await api("GET", "/api/v1/campus/checkin-networks");
    byId("campus-networks-form").elements.ranges.value = campus.ranges.join("\n");
    fill("room-networks-body", campus.rooms, function (r) {
      return row([r.room_id, r.ranges.length ? r.ranges.join(", ") : "none (not restricted)"]);
    });
    if (!byId("network-room").value) { return; }
    var form = byId("room-networks-form"), setting = await api("GET", roomNetworksUrl());
    form.elements.follow.checked = setting.ranges === null;
    form.elements.ranges.value = (setting.ranges || []).join("\n");
    form.elements.ranges.disabled = setting.ranges === null;
    byId("room-networks-effective").textContent = setting.applies === "none" ? "No restriction applies to this room."
      : "Applies to this room (" + (setting.applies === "room" ? "its own setting" : "the campus's") + "): " +
        setting.effective.join(", ");
  }

  function initCheckinNetworks() {
    onSubmit("campus-networks-form", async function (form) {
      await api("PUT", "/api/v1/campus/checkin-networks", { ranges: rangeList(form.elements.ranges.value) });
      await loadCheckinNetworks();
      return "Campus check-in networks saved.";
    });
    onSubmit("room-networks-form", async function (form) {
      var ranges = form.elements.follow.checked ? null : rangeList(form.elements.ranges.value);
      await api("PUT", roomNetworksUrl(), { ranges: ranges });
      await loadCheckinNetworks();
      return "Room check-in networks saved.";
    });
    var roomForm = byId("room-networks-form");
    roomForm.elements.follow.addEventListener("change", function () { roomForm.elements.ranges.disabled = roomForm.elements.follow.checked; });
    byId("network-room").addEventListener("change", function () { loadCheckinNetworks().catch(function (e) { say(e.message, true); }); });
  }

  // --- faculty: actions on today's sessions -------------------------------------------

  async function initAddSession() {
    var form = byId("add-session-form");
    if (!form) { return; }
    var courses = await api("GET", "/api/v1/courses?limit=500");
    var rooms = await api("GET", "/api/v1/rooms?limit=500");
    courses.items.forEach(function (c) {
      var o = el("option", c.code + " " + c.title); o.value = c.id; byId("add-session-course").appendChild(o);
    });
    rooms.items.forEach(function (r) {
      var o = el("option", r.name + " (" + r.building + ")"); o.value = r.id; byId("add-session-room").appendChild(o);
    });
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      var data = new FormData(form);
      // Local wall-clock date and times → instants; the API takes ISO 8601 with an offset.
      var starts = new Date(data.get("date") + "T" + data.get("start"));
      var ends = new Date(data.get("date") + "T" + data.get("end"));
      if (isNaN(starts) || isNaN(ends)) { say("Give a date, a start and an end.", true); return; }
      var body = { course_id: data.get("course_id"), room_id: data.get("room_id"),
                   starts_at: starts.toISOString(), ends_at: ends.toISOString() };
      var topics = String(data.get("topics") || "").split(",").map(function (t) { return t.trim(); }).filter(Boolean);
      if (topics.length) { body.topics = topics; }
      try {
        await api("POST", "/api/v1/sessions", body);
        window.location.reload();
      } catch (e) { say(e.message, true); }
    });
  }

  function initFaculty() {
    initAddSession().catch(function (e) { say(e.message, true); });
    document.querySelectorAll(".session-actions[data-session-id]").forEach(function (box) {
      var id = box.dataset.sessionId;
      var status = box.dataset.status;
      var path = "/api/v1/sessions/" + encodeURIComponent(id);
      async function act(suffix, body) {
        try { await api("POST", path + suffix, body); window.location.reload(); } catch (e) { say(e.message, true); }
      }
      if (status === "scheduled") { box.appendChild(button("Open now", function () { act("/open"); })); }
      if (status === "scheduled" || status === "open") {
        box.appendChild(button("Close", function () { act("/close"); }));
        box.appendChild(button("Cancel", function () {
          var reason = window.prompt("Why is this session cancelled?");
          if (reason) { act("/cancel", { reason: reason }); }
        }));
      }
      if (status === "scheduled") {
        box.appendChild(button("Reschedule", function () {
          var start = window.prompt("New start (YYYY-MM-DDTHH:MM, your local time)");
          if (!start) { return; }
          var minutes = Number(window.prompt("Length in minutes", "60"));
          var s = new Date(start);
          if (isNaN(s) || !minutes) { say("Not a valid time or length.", true); return; }
          act("/reschedule", { starts_at: s.toISOString(), ends_at: new Date(s.getTime() + minutes * 60000).toISOString() });
        }));
      }
      if (status !== "cancelled") {
        box.appendChild(button("Topics", async function () {
          var current = box.dataset.topics || "";
          var text = window.prompt("Topics covered (comma-separated)", current);
          if (text === null) { return; }
          var topics = text.split(",").map(function (t) { return t.trim(); }).filter(Boolean);
          try { await api("PUT", path + "/topics", { topics: topics }); window.location.reload(); } catch (e) { say(e.message, true); }
        }));
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var page = document.body.dataset.page;
    if (page === "admin-academic") { initAdmin(); }
    if (page === "faculty") { initFaculty(); }
  });
})();
