// The admin's people page (/admin/people): search, paging, add, edit, role, deactivate/reactivate, delete,
// password and MFA resets, and the CSV import.
// Plain ES2017, no build step. Everything goes through the people API (/api/v1/users) with the
// browser's cookies; bodies are JSON (the API's CSRF defence). Text is only ever set with
// textContent, so names carrying markup stay text.
(function () {
  "use strict";
  if (document.body.dataset.page !== "admin-people") { return; }

  var PAGE = 25;
  var state = { offset: 0, total: 0, q: "", role: "", active: "", items: [], editing: null };

  function byId(id) { return document.getElementById(id); }
  function el(tag, text, className) {
    var n = document.createElement(tag);
    if (text !== undefined && text !== null) { n.textContent = String(text); }
    if (className) { n.className = className; }
    return n;
  }

  function say(message, isError) {
    var box = byId("people-message");
    box.textContent = message || "";
    box.className = "ac-message" + (isError ? " ac-error" : "");
    box.hidden = !message;
  }

  // app.js: the one JSON API call; an ended session goes to the login (options: a CSV body as it is).
  function api(method, path, body, options) {
    return window.CampusHub.api(method, path, body, Object.assign({ loginOn401: true }, options));
  }

  function cell(label, text) {
    var td = el("td", text === null || text === undefined || text === "" ? "—" : text);
    td.dataset.label = label;
    return td;
  }

  function actionButton(label, onClick) {
    var b = el("button", label, "small");
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  }

  function render() {
    var body = byId("people-body");
    body.textContent = "";
    if (!state.items.length) {
      var tr = el("tr"); var td = el("td", "Nobody matches.", "muted"); td.colSpan = 7; tr.appendChild(td); body.appendChild(tr);
    }
    state.items.forEach(function (user) {
      var tr = el("tr", null, user.active ? "" : "people-inactive");
      tr.dataset.userId = user.id;
      tr.dataset.username = user.username;
      tr.appendChild(cell("Username", user.username));
      tr.appendChild(cell("Name", user.display_name));
      tr.appendChild(cell("Role", user.role));
      tr.appendChild(cell("Roll no.", user.roll_number));
      tr.appendChild(cell("Email", user.email));
      tr.appendChild(cell("State", user.active ? "active" : "deactivated"));
      var actions = el("td", null, "people-actions");
      actions.appendChild(actionButton("Edit", function () { startEdit(user); }));
      if (user.active) {
        actions.appendChild(actionButton("Deactivate", function () { changeState(user, "deactivate", actions); }));
      } else {
        actions.appendChild(actionButton("Reactivate", function () { changeState(user, "reactivate", actions); }));
      }
      actions.appendChild(actionButton("Delete", function () { remove(user, actions); }));
      if (user.active) {
        var resetButton = actionButton("Reset password", function () { resetPassword(user, actions, resetButton); });
        var mfaButton = actionButton("Reset MFA", function () { resetMfa(user, actions, mfaButton); });
        actions.appendChild(resetButton);
        actions.appendChild(mfaButton);
      }
      tr.appendChild(actions);
      body.appendChild(tr);
    });
    var last = Math.min(state.offset + state.items.length, state.total);
    byId("people-range").textContent = state.total ? (state.offset + 1) + "–" + last + " of " + state.total : "0 of 0";
    byId("people-prev").disabled = state.offset === 0;
    byId("people-next").disabled = last >= state.total;
  }

  // An answer to a row's button, shown in that row (replacing the row's previous answer).
  function note(actions, content, className) {
    actions.querySelectorAll(".people-refusal, .people-note").forEach(function (n) { n.remove(); });
    if (!content) { return; }
    var p = typeof content === "string" ? el("p", content) : content;
    p.classList.add(className || "people-note");
    p.setAttribute("role", "status");
    actions.appendChild(p);
  }
  function refusal(actions, message) { note(actions, message, "people-refusal"); }
  // After a change and the reload: the answer goes in the person's row if it is still listed,
  // else beside the list's range (a deleted person), never in the box at the top of the page.
  function told(user, message) {
    var row = document.querySelector('#people-body tr[data-user-id="' + CSS.escape(user.id) + '"]');
    if (row) { note(row.querySelector(".people-actions"), message); return; }
    window.CampusHub.feedback(byId("people-range"), message, "success");
  }

  async function resetPassword(user, actions, button) {
    if (!(await window.CampusHub.confirmAction("Reset the password of " + user.username + "? Their password stops working and they are logged out everywhere; they choose a new one with the code.", { confirmLabel: "Reset password" }))) { return; }
    button.disabled = true;
    try {
      var issued = await api("POST", "/api/v1/users/" + encodeURIComponent(user.id) + "/reset", {});
      var p = el("p");
      p.appendChild(document.createTextNode("Reset code for " + user.username + " (shown once; valid until " +
        new Date(issued.expires_at).toLocaleString() + "): "));
      p.appendChild(el("code", issued.code, "people-reset-code"));
      p.appendChild(document.createTextNode(" They use it at /activate."));
      note(actions, p);
    } catch (e) { refusal(actions, e.message); }
    finally { button.disabled = false; }
  }

  async function resetMfa(user, actions, button) {
    if (!(await window.CampusHub.confirmAction("Turn off two-factor authentication for " + user.username + " (a lost phone)? They enrol again at their next login.", { confirmLabel: "Turn off two-factor" }))) { return; }
    button.disabled = true;
    try {
      await api("POST", "/api/v1/users/" + encodeURIComponent(user.id) + "/mfa/reset", {});
      note(actions, "Two-factor authentication is off for " + user.username + ": they enrol again at their next login.");
    } catch (e) { refusal(actions, e.message); }
    finally { button.disabled = false; }
  }

  async function load() {
    var params = new URLSearchParams({ limit: String(PAGE), offset: String(state.offset) });
    if (state.q) { params.set("q", state.q); }
    if (state.role) { params.set("role", state.role); }
    if (state.active) { params.set("state", state.active); }
    try {
      var page = await api("GET", "/api/v1/users?" + params.toString());
      state.items = page.items; state.total = page.total;
      render();
    } catch (e) { say(e.message, true); }
  }

  async function changeState(user, step, actions) {
    if (step === "deactivate" && !(await window.CampusHub.confirmAction("Deactivate " + user.username + "? They are logged out at once; their records stay.", { confirmLabel: "Deactivate" }))) { return; }
    try {
      await api("POST", "/api/v1/users/" + encodeURIComponent(user.id) + "/" + step, {});
      await load();
      told(user, user.username + (step === "deactivate" ? " is deactivated." : " can log in again."));
    } catch (e) { refusal(actions, e.message); }
  }

  async function remove(user, actions) {
    if (!(await window.CampusHub.confirmAction("Delete " + user.username + " for good?", { confirmLabel: "Delete" }))) { return; }
    try {
      await api("DELETE", "/api/v1/users/" + encodeURIComponent(user.id));
      await load();
      told(user, user.username + " is deleted.");
    } catch (e) { refusal(actions, e.message); }
  }

  function showStudentFields(form, isStudent) {
    form.querySelectorAll(".student-only").forEach(function (label) { label.hidden = !isStudent; });
  }

  function startEdit(user) {
    var form = byId("people-edit-form");
    state.editing = user;
    byId("people-edit-name").textContent = user.username;
    form.elements.display_name.value = user.display_name;
    form.elements.role.value = user.role;
    form.elements.email.value = user.email || "";
    form.elements.roll_number.value = user.roll_number || "";
    form.elements.program.value = user.program || "";
    form.elements.section.value = user.section || "";
    form.elements.reason.value = "";
    showStudentFields(form, user.role === "student");
    byId("people-edit").hidden = false;
    form.elements.display_name.focus();
  }

  byId("people-edit-form").addEventListener("submit", async function (event) {
    event.preventDefault();
    var form = event.target, user = state.editing, body = {};
    if (!user) { return; }
    var name = form.elements.display_name.value.trim();
    if (name !== user.display_name) { body.display_name = name; }
    if (form.elements.role.value !== user.role) { body.role = form.elements.role.value; }
    var email = form.elements.email.value.trim() || null;
    if (email !== (user.email || null)) { body.email = email; }
    if (user.role === "student") {
      var roll = form.elements.roll_number.value.trim();
      if (roll && roll !== user.roll_number) { body.roll_number = roll; }
      ["program", "section"].forEach(function (f) {
        var v = form.elements[f].value.trim() || null;
        if (v !== (user[f] || null)) { body[f] = v; }
      });
    }
    if (!Object.keys(body).length) { say("Nothing changed."); return; }
    if (form.elements.reason.value.trim()) { body.reason = form.elements.reason.value.trim(); }
    try {
      await api("PATCH", "/api/v1/users/" + encodeURIComponent(user.id), body);
      byId("people-edit").hidden = true;
      state.editing = null;
      say(user.username + " is saved.");
      await load();
    } catch (e) { say(e.message, true); }
  });
  byId("people-edit-cancel").addEventListener("click", function () { byId("people-edit").hidden = true; state.editing = null; });

  var createForm = byId("people-create-form");
  var createRole = byId("people-create-role");
  createRole.addEventListener("change", function () { showStudentFields(createForm, createRole.value === "student"); });
  showStudentFields(createForm, createRole.value === "student");
  createForm.addEventListener("submit", async function (event) {
    event.preventDefault();
    var body = {};
    Array.prototype.forEach.call(createForm.elements, function (input) {
      if (!input.name || input.closest("label").hidden) { return; }
      var value = input.value.trim();
      if (value !== "") { body[input.name] = value; }
    });
    try {
      var made = await api("POST", "/api/v1/users", body);
      byId("people-activation-user").textContent = made.user.username;
      byId("people-activation-code").textContent = made.activation.code;
      byId("people-activation-expires").textContent = new Date(made.activation.expires_at).toLocaleString();
      byId("people-activation").hidden = false;
      createForm.reset();
      showStudentFields(createForm, createRole.value === "student");
      // Beside the Add button, not in the box at the top of the page (issue 15: feedback where the user acted).
      window.CampusHub.feedback(createForm, made.user.username + " is added: give them the activation code below.", "success");
      await load();
    } catch (e) { window.CampusHub.feedback(createForm, e.message, "error"); }
  });

  // --- CSV import: check (dry run), then import; the codes are shown once, with a CSV download ---
  var importForm = byId("people-import-form");
  var importMax = Number(importForm.dataset.maxBytes);
  var importedCodes = [];

  function importSay(message, isError) {
    var box = byId("people-import-message");
    box.textContent = message;
    box.className = "ac-message" + (isError ? " ac-error" : "");
    byId("people-import-result").hidden = false;
  }

  function fillRows(tbody, rows) {
    tbody.textContent = "";
    rows.forEach(function (cells) {
      var tr = el("tr");
      cells.forEach(function (c) { tr.appendChild(cell(c[0], c[1])); });
      tbody.appendChild(tr);
    });
  }

  function showProblems(errors) {
    fillRows(byId("people-import-problems-body"), errors.map(function (e) {
      return [["Line", e.line], ["Field", e.field], ["Problem", e.reason]];
    }));
    byId("people-import-problems").hidden = !errors.length;
  }

  function showCodes(created) {
    importedCodes = created.filter(function (c) { return c.activation_code; });
    fillRows(byId("people-import-codes-body"), importedCodes.map(function (c) {
      return [["Line", c.line], ["Username", c.username], ["Name", c.display_name], ["Role", c.role],
              ["Activation code", c.activation_code]];
    }));
    byId("people-import-codes").hidden = !importedCodes.length;
  }

  async function sendImport(dryRun, button) {
    var file = byId("people-import-file").files[0];
    var body = file || byId("people-import-text").value;
    showProblems([]);
    if (!dryRun) { showCodes([]); }
    if (!file && !body.trim()) { importSay("Choose a CSV file, or paste one.", true); return; }
    if ((file ? file.size : new Blob([body]).size) > importMax) {
      importSay("The file is larger than " + Math.round(importMax / 1048576) + " MiB: split it.", true); return;
    }
    button.disabled = true;
    try {
      // The file's bytes as they are, so a wrong encoding is reported with its line.
      var data = await api("POST", "/api/v1/users/import" + (dryRun ? "?dry_run=1" : ""), body, { contentType: "text/csv" });
      if (data.dry_run) {
        importSay("The file is fine: " + data.created.length + " new, " + data.unchanged +
                  " already here. Press Import to apply it.");
      } else {
        importSay("Imported: " + data.created.length + " new, " + data.unchanged + " already here.");
        showCodes(data.created);
        importForm.reset();
        await load();
      }
    } catch (e) {
      if (e.status === 401) { return; }  // on the way to the login page
      if (e.status === 422 && e.data && e.data.errors) {
        importSay(e.message + " Fix the rows below and check again.", true);
        showProblems(e.data.errors);
      } else {
        importSay(e.status ? e.message : "The import could not be sent: " + e.message, true);
      }
    } finally { button.disabled = false; }
  }

  function csvValue(value) {
    var text = value === null || value === undefined ? "" : String(value);
    return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  // The columns of the API's own codes CSV (web/routes/accounts_api.py CODES_CSV_COLUMNS). The codes
  // are never sent again, so the download is made here from the answer the page already holds.
  var CODE_COLUMNS = ["username", "display_name", "role", "email", "roll_number", "activation_code", "expires_at"];
  byId("people-import-download").addEventListener("click", function () {
    var lines = [CODE_COLUMNS.join(",")].concat(importedCodes.map(function (c) {
      return CODE_COLUMNS.map(function (k) { return csvValue(c[k]); }).join(",");
    }));
    var link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([lines.join("\r\n") + "\r\n"], { type: "text/csv" }));
    link.download = "activation-codes.csv";
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(link.href); }, 1000);
  });
  byId("people-import-check").addEventListener("click", function (event) { sendImport(true, event.target); });
  byId("people-import-apply").addEventListener("click", function (event) { sendImport(false, event.target); });

  byId("people-search").addEventListener("submit", function (event) {
    event.preventDefault();
    state.q = byId("people-q").value.trim();
    state.role = byId("people-role").value;
    state.active = byId("people-state").value;
    state.offset = 0;
    load();
  });
  byId("people-prev").addEventListener("click", function () { state.offset = Math.max(0, state.offset - PAGE); load(); });
  byId("people-next").addEventListener("click", function () { state.offset += PAGE; load(); });
  load();
})();
