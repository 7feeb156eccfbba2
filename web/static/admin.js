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

  // The faculty page keeps one message box (#ac-message) above its session list.
  function say(message, isError) {
    var box = byId("ac-message");
    if (!box) { if (message) { window.alert(message); } return; }
    box.textContent = message || "";
    box.className = "ac-message" + (isError ? " ac-error" : "");
    box.hidden = !message;
  }

  // app.js: the one JSON API call (every API refusal carries its own sentence, web/errors.py).
  var api = window.CampusHub.api;

  // --- admin console: feedback where the user acted (CampusHub.feedback, app.js) ----------

  function tell(anchor, text, kind) { return window.CampusHub.feedback(anchor, text, kind); }

  function row(cells, actions) {
    var tr = el("tr");
    cells.forEach(function (c) { var td = el("td"); if (c instanceof Node) { td.appendChild(c); } else { td.textContent = c === null || c === undefined || c === "" ? "—" : String(c); } tr.appendChild(td); });
    if (actions) { var td = el("td", null, "ac-actions"); actions.forEach(function (a) { td.appendChild(a); }); tr.appendChild(td); }
    return tr;
  }

  // Rows, or a sentence saying what is empty and what makes something appear.
  function fill(tbodyId, items, toRow, emptyText) {
    var body = byId(tbodyId);
    body.textContent = "";
    if (!items.length) {
      var tr = el("tr"); var td = el("td", emptyText || "None yet.", "empty-state");
      td.colSpan = body.closest("table").querySelectorAll("thead th").length || 1;
      tr.appendChild(td); body.appendChild(tr); return;
    }
    items.forEach(function (item) { body.appendChild(toRow(item)); });
    applyFilter(tbodyId);
  }

  function button(label, onClick, className) {
    var b = el("button", label, className || "btn-secondary inline"); b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  }

  // The search box above a table: shows only the rows containing what was typed.
  function applyFilter(tbodyId) {
    var input = document.querySelector('.ac-filter[data-table="' + tbodyId + '"]');
    if (!input) { return; }
    var query = input.value.trim().toLowerCase();
    byId(tbodyId).querySelectorAll("tr").forEach(function (tr) {
      if (tr.querySelector(".empty-state")) { return; }
      tr.hidden = Boolean(query) && tr.textContent.toLowerCase().indexOf(query) < 0;
    });
  }

  function formBody(form, numeric) {
    var body = {};
    Array.prototype.forEach.call(form.elements, function (input) {
      if (!input.name || input.type === "file" || input.type === "submit" || input.disabled) { return; }
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
      // A handler returns the sentence saying what its change did; it shows beside the form's button.
      try { tell(form, (await handler(form)) || "Saved.", "success"); } catch (e) { tell(form, e.message, "error"); }
    });
  }

  // --- teachers: picked by name in a CampusHub.picker (app.js), never typed as ids ---------

  var faculty = [];

  function personLabel(u) { return u.display_name + " (" + u.username + ")"; }

  async function loadFaculty() {
    var page = await api("GET", "/api/v1/users?role=faculty&limit=500");
    faculty = page.items.filter(function (u) { return u.active; });
    document.querySelectorAll(".faculty-select").forEach(function (select) {
      select.textContent = "";
      select.appendChild(el("option", "—")).value = "";  // no teacher until one is picked (also after reset)
      faculty.forEach(function (u) { var o = el("option", personLabel(u)); o.value = u.id; select.appendChild(o); });
    });
  }

  // --- add and edit share one form: Edit fills it, its button says Save, Stop editing resets it ----

  function editing(form) { return form.dataset.editId || null; }

  function startEdit(form, id, values, fixed) {
    stopEdit(form);
    form.dataset.editId = id;
    Object.keys(values).forEach(function (name) {
      if (form.elements[name] && form.elements[name].type !== "hidden") { form.elements[name].value = values[name] === null ? "" : values[name]; }
    });
    (fixed || []).forEach(function (name) { form.elements[name].disabled = true; });
    form.querySelector("button[type=submit]").textContent = form.dataset.saveLabel;
    form.querySelector(".ac-stop-edit").hidden = false;
    form.classList.add("ac-editing");
    tell(form, "Editing: change the fields, then " + form.dataset.saveLabel + ".", "info");
    var first = form.querySelector("input:not([type=hidden]):not([disabled]), select:not([disabled])");
    if (first) { first.focus({ preventScroll: true }); }
  }

  function stopEdit(form) {
    delete form.dataset.editId;
    Array.prototype.forEach.call(form.elements, function (input) { input.disabled = false; });
    form.querySelector("button[type=submit]").textContent = form.dataset.addLabel;
    form.querySelector(".ac-stop-edit").hidden = true;
    form.classList.remove("ac-editing");
  }

  // Destructive: ask first (CampusHub.confirmAction), then say what happened below the table.
  async function remove(what, path, tableId, reload) {
    var anchor = byId(tableId);
    var ok = await window.CampusHub.confirmAction("Delete " + what + "? This cannot be undone.",
      { confirmLabel: "Delete", cancelLabel: "Keep", danger: true });
    if (!ok) { return; }
    try {
      await api("DELETE", path);
      document.querySelectorAll("form[data-edit-id]").forEach(function (form) { if (path.indexOf(encodeURIComponent(form.dataset.editId)) >= 0) { stopEdit(form); form.reset(); } });
      await reload();
      tell(anchor, what.charAt(0).toUpperCase() + what.slice(1) + " deleted.", "success");
    } catch (e) { tell(anchor, e.message, "error"); }
  }

  // --- admin console ---------------------------------------------------------------

  var WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
  var state = { terms: [], courses: [], rooms: [], sections: [] };

  function nameOf(items, id, label) {
    var item = items.filter(function (x) { return x.id === id; })[0];
    return item ? label(item) : id;
  }
  function termName(id) { return nameOf(state.terms, id, function (t) { return t.name; }); }
  function roomName(id) { return nameOf(state.rooms, id, function (r) { return r.name + " (" + r.building + ")"; }); }
  function plainType(t) { return t ? (t.charAt(0).toUpperCase() + t.slice(1)).replace(/_/g, " ") : t; }

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
    var termForm = byId("term-form"), roomForm = byId("room-form"), courseForm = byId("course-form"), sectionForm = byId("section-form");
    fill("terms-body", terms.items, function (t) {
      return row([t.name, t.starts_on, t.ends_on, t.timezone], [
        button("Edit", function () { startEdit(termForm, t.id, t); }),
        button("Delete", function () { remove("term " + t.name, "/api/v1/terms/" + encodeURIComponent(t.id), "terms-table", loadAll); }, "btn-danger inline")]);
    }, "No terms yet. Add one below; its sections and timetable hang on it.");
    fill("holidays-body", holidays.items, function (h) {
      return row([h.name, h.starts_on, h.ends_on], [button("Delete", async function () {
        var ok = await window.CampusHub.confirmAction("Delete holiday " + h.name + "? Its days get their classes back.", { confirmLabel: "Delete" });
        if (!ok) { return; }
        try { var r = await api("DELETE", "/api/v1/holidays/" + h.id); await loadAll(); tell(byId("holidays-table"), "Holiday deleted. " + r.message, "success"); } catch (e) { tell(byId("holidays-table"), e.message, "error"); }
      }, "btn-danger inline")]);
    }, "No holidays. Add one below: its days lose their classes.");
    fill("rooms-body", rooms.items, function (r) {
      var tr = row([r.name, r.building, plainType(r.room_type), r.capacity === null ? null : r.capacity + " seats"], [
        button("Edit", function () { startEdit(roomForm, r.id, r); }),
        button("Delete", function () { remove("room " + r.name, "/api/v1/rooms/" + encodeURIComponent(r.id), "rooms-table", loadAll); }, "btn-danger inline")]);
      tr.dataset.roomId = r.id;
      return tr;
    }, "No rooms yet. Add one below.");
    fill("courses-body", courses.items, function (c) {
      return row([c.code, c.title, c.faculty_name, c.enrolled + " students"], [
        button("Edit", function () { var who = courseForm.elements.faculty_id;
          if (c.faculty_id && !Array.prototype.some.call(who.options, function (o) { return o.value === c.faculty_id; })) {
            who.appendChild(el("option", c.faculty_name || "Former teacher")).value = c.faculty_id;  // deactivated since
          }
          startEdit(courseForm, c.id, c); }),
        button("Delete", function () { remove("course " + c.code, "/api/v1/courses/" + encodeURIComponent(c.id), "courses-table", loadAll); }, "btn-danger inline")]);
    }, "No courses yet. Add one below with its coordinator.");
    fill("sections-body", sections.items, function (s) {
      return row([s.course_code, termName(s.term_id), s.name, s.capacity === null ? null : s.capacity + " seats", s.enrolled + " students"], [
        button("Edit", function () { startEdit(sectionForm, s.id, s, ["course_id", "term_id"]); }),
        button("Delete", function () { remove("section " + s.course_code + " " + s.name, "/api/v1/sections/" + encodeURIComponent(s.id), "sections-table", loadAll); }, "btn-danger inline")]);
    }, "No sections yet. Add one below: a course in a term.");
    fill("assignments-body", assignments.items, function (a) {
      return row([a.course_code, a.faculty_name, a.section_id ? nameOf(state.sections, a.section_id, function (s) { return s.name; }) : "All sections", a.role], [button("Remove", async function () {
        var ok = await window.CampusHub.confirmAction("Remove " + a.faculty_name + " from " + a.course_code + "?", { confirmLabel: "Remove" });
        if (!ok) { return; }
        try { await api("DELETE", "/api/v1/faculty-assignments/" + a.id); await loadAll(); tell(byId("assignments-table"), a.faculty_name + " removed from " + a.course_code + ".", "success"); } catch (e) { tell(byId("assignments-table"), e.message, "error"); }
      }, "btn-danger inline")]);
    }, "No one is assigned yet. A course's coordinator is assigned when the course is added.");
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
    var slotForm = byId("slot-form");
    fill("slots-body", slots.items, function (s) {
      var what = "the " + WEEKDAYS[s.weekday] + " " + s.starts_time + " slot of " + s.course_code + " " + s.section_name;
      return row([WEEKDAYS[s.weekday], s.starts_time + "–" + s.ends_time, s.course_code, s.section_name, s.room_name, plainType(s.kind)], [
        button("Edit", function () { startEdit(slotForm, s.id, s, ["section_id"]); }),
        button("Delete", async function () {
          var ok = await window.CampusHub.confirmAction("Delete " + what + "? Its future sessions are removed (cancelled if they already have attendance).", { confirmLabel: "Delete" });
          if (!ok) { return; }
          try {
            var r = await api("DELETE", "/api/v1/timetable-slots/" + encodeURIComponent(s.id));
            if (editing(slotForm) === s.id) { stopEdit(slotForm); slotForm.reset(); }
            await loadSlots();
            tell(byId("slots-table"), "Slot deleted: " + r.deleted + " future sessions removed, " + r.cancelled + " cancelled.", "success");
          } catch (e) { tell(byId("slots-table"), e.message, "error"); }
        }, "btn-danger inline")]);
    }, term ? "No weekly slots in this term yet. Add one below." : "No weekly slots yet. Choose a term, then add one below.");
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
    }, "No sessions from now on in this term.");
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
    var anchor = byId(dryRun ? "generate-dry" : "generate").parentNode;
    if (!term) { tell(anchor, "Choose a term first (above the timetable).", "error"); return; }
    try {
      var r = await api("POST", "/api/v1/terms/" + encodeURIComponent(term) + "/generate" + (dryRun ? "?dry_run=1" : ""));
      byId("generate-result").textContent = (dryRun ? "Would create " : "Created ") + r.created + " sessions, update " + r.updated +
        ", delete " + r.deleted + ", cancel " + r.cancelled + ", restore " + r.restored + "; kept " + r.kept +
        "; skipped for holidays " + r.skipped_holidays + ".";
      tell(anchor, "");
      if (!dryRun) { await loadTermSessions(term); }
    } catch (e) { tell(anchor, e.message, "error"); }
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

  // One submit per form: POST when adding, PATCH the edited thing when editing.
  async function save(form, path, body) {
    var id = editing(form);
    var result = id ? await api("PATCH", path + "/" + encodeURIComponent(id), body) : await api("POST", path, body);
    stopEdit(form);
    return { result: result, edited: Boolean(id) };
  }

  function initAdmin() {
    document.querySelectorAll(".ac-stop-edit").forEach(function (b) {
      b.addEventListener("click", function () { var form = b.form; stopEdit(form); form.reset(); tell(form, ""); });
    });
    document.querySelectorAll(".ac-filter").forEach(function (input) {
      input.addEventListener("input", function () { applyFilter(input.dataset.table); });
    });
    onSubmit("term-form", async function (form) {
      var body = formBody(form);
      var done = await save(form, "/api/v1/terms", body); form.reset(); await loadAll();
      return "Term " + body.name + (done.edited ? " saved. " + (done.result.message || "") : " added.");
    });
    onSubmit("holiday-form", async function (form) { var r = await api("POST", "/api/v1/holidays", formBody(form)); form.reset(); await loadAll(); return "Holiday added. " + r.message; });
    onSubmit("room-form", async function (form) {
      var body = formBody(form, ["capacity"]);
      if (editing(form) && body.capacity === undefined) { body.capacity = null; }
      var done = await save(form, "/api/v1/rooms", body); form.reset(); await loadAll();
      return "Room " + done.result.name + (done.edited ? " saved." : " added.");
    });
    onSubmit("course-form", async function (form) {
      var done = await save(form, "/api/v1/courses", formBody(form)); form.reset(); await loadAll();
      return "Course " + done.result.code + (done.edited ? " saved." : " added.");
    });
    onSubmit("section-form", async function (form) {
      var body = formBody(form, ["capacity"]);
      if (editing(form) && body.capacity === undefined) { body.capacity = null; }
      var done = await save(form, "/api/v1/sections", body);
      form.elements.name.value = ""; form.elements.capacity.value = ""; await loadAll();
      return "Section " + done.result.course_code + " " + done.result.name + (done.edited ? " saved." : " added.");
    });
    onSubmit("assignment-form", async function (form) {
      var r = await api("POST", "/api/v1/faculty-assignments", formBody(form)); await loadAll();
      return r.faculty_name + " assigned to " + r.course_code + ".";
    });
    onSubmit("slot-form", async function (form) {
      var body = formBody(form, ["weekday"]);
      if (editing(form)) { delete body.section_id; }
      var done = await save(form, "/api/v1/timetable-slots", body); await loadSlots();
      return (done.edited ? "Slot saved. " : "Slot added. ") + done.result.message;
    });
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
        var result = await api("POST", "/api/v1/enrolments/import" + (query.length ? "?" + query.join("&") : ""), await file.text(), { contentType: "text/csv" });
        showImport(result, null);
        if (!result.dry_run) { await loadAll(); }
      } catch (e) { showImport(null, e); }
    });
    byId("timetable-term").addEventListener("change", function () { loadSlots().catch(function (e) { tell(byId("slots-table"), e.message, "error"); }); });
    byId("rules-course").addEventListener("change", function () { loadRules().catch(function (e) { tell(byId("rules-form"), e.message, "error"); }); });
    byId("generate").addEventListener("click", function () { generate(false); });
    byId("generate-dry").addEventListener("click", function () { generate(true); });
    initCheckinNetworks();
    Promise.all([loadFaculty(), loadAll()]).then(loadCheckinNetworks).catch(function (e) { tell(document.querySelector("h1"), e.message, "error"); });
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
      return row([roomName(r.room_id), r.ranges.length ? r.ranges.join(", ") : "none (not restricted)"]);
    }, "No room has its own setting: the campus ranges apply everywhere.");
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
    byId("network-room").addEventListener("change", function () { loadCheckinNetworks().catch(function (e) { tell(roomForm, e.message, "error"); }); });
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
        box.appendChild(button("Close session", function () { act("/close"); }));
        box.appendChild(button("Cancel session", function () {
          var reason = window.prompt("Why is this session cancelled? (Students see this.)");
          if (reason) { act("/cancel", { reason: reason }); }
        }, "btn-danger inline"));
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
