// Leave, corrections and the faculty queues. Plain ES2017, no build step.
// Pages: <body data-page="student-leave" | "student-corrections" | "faculty-queues">.
// Everything goes through the JSON API with the browser's cookies.
(function () {
  "use strict";

  var el = window.CampusHub.el;  // app.js's element helper

  function when(iso) {
    if (!iso) { return "—"; }
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString([], { day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit" });
  }

  // app.js: the one JSON API call; a refused upload is worded for this page's one file.
  function api(method, path, body) { return window.CampusHub.api(method, path, body, { tooLarge: "The file is too large." }); }

  // The answer boxes sit right under each form's button; scrolled into view like CampusHub.feedback's,
  // since on a phone the button can be the last thing on screen and its answer would land below the fold.
  function show(node, message) {
    if (!node) { return; }
    node.textContent = message || "";
    node.hidden = !message;
    if (message && node.scrollIntoView) { node.scrollIntoView({ block: "nearest" }); }
  }

  function fill(list, items, render) {
    list.textContent = "";
    if (!items.length) { list.appendChild(el("li", "muted", list.dataset.empty || "Nothing here.")); return; }
    items.forEach(function (item) { list.appendChild(render(item)); });
  }

  function stateTag(state) { return el("span", "state state-" + state, state); }

  // A correction's change, the same words for the student and the faculty: the record when it was
  // asked for (current_status) → what it should say, and what the record says now if that differs.
  function correctionChange(c) {
    var before = c.current_status || "no record";
    var text = before + " → " + c.requested_status;
    if (c.status === "pending" && (c.record_status || null) !== (c.current_status || null)) {
      text += " (now " + (c.record_status || "no record") + ")";
    }
    return el("span", "correction-change", text);
  }

  function button(label, onClick, className) {
    var b = el("button", className || "", label);
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  }

  function readFileBase64(file) {
    return new Promise(function (resolve, reject) {
      var reader = new FileReader();
      reader.onload = function () {
        var url = String(reader.result);
        resolve(url.slice(url.indexOf(",") + 1));
      };
      reader.onerror = function () { reject(new Error("Could not read the file.")); };
      reader.readAsDataURL(file);
    });
  }

  function leaveSpan(l) { return l.starts_on === l.ends_on ? l.starts_on : l.starts_on + " → " + l.ends_on; }

  // --- student: leave -------------------------------------------------------------------------

  function studentLeave() {
    var form = document.getElementById("leave-form");
    var list = document.getElementById("leave-list");
    var error = document.getElementById("leave-error");
    var done = document.getElementById("leave-done");

    function render(l) {
      var li = el("li", "record-item leave-item");
      li.dataset.leaveId = l.id;
      li.dataset.status = l.status;
      var head = el("div", "head");
      head.appendChild(el("strong", "", leaveSpan(l)));
      head.appendChild(stateTag(l.status));
      if (l.status === "approved") { head.appendChild(el("span", "muted", l.excused_sessions + " class(es) excused")); }
      li.appendChild(head);
      li.appendChild(el("p", "reason", l.reason));
      if (l.decision_note) { li.appendChild(el("p", "muted", "Note: " + l.decision_note)); }
      var actions = el("div", "actions");
      if (l.document) {
        var a = el("a", "", l.document.filename);
        a.href = l.document.url;
        actions.appendChild(a);
      }
      if (l.status === "applied" || l.status === "approved") {
        // "Withdraw application": one wording per action ("Cancel" is only for sessions and tickets).
        actions.appendChild(button("Withdraw application", function (ev) {
          var target = ev.target;
          window.CampusHub.confirmAction("Withdraw this leave application?" +
            (l.status === "approved" ? " Its excused classes go back to how they were recorded." : ""),
            { confirmLabel: "Withdraw application", cancelLabel: "Keep application", danger: true }).then(function (ok) {
            if (!ok) { return; }
            target.disabled = true;
            api("POST", "/api/v1/leave/" + l.id + "/cancel", {}).then(load, function (e) { show(error, e.message); target.disabled = false; });
          });
        }, "cancel-leave btn-danger inline"));
      }
      li.appendChild(actions);
      return li;
    }

    function load() {
      return api("GET", "/api/v1/leave?limit=100").then(function (page) { fill(list, page.items, render); },
        function (e) { show(error, e.message); });
    }

    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      show(error, ""); show(done, "");
      var body = { starts_on: form.starts_on.value, ends_on: form.ends_on.value, reason: form.reason.value };
      var file = form.document.files[0];
      var submit = form.querySelector("button[type=submit]");
      submit.disabled = true;
      var ready = file ? readFileBase64(file).then(function (data) {
        body.document = { filename: file.name, content_type: file.type || undefined, data_base64: data };
      }) : Promise.resolve();
      ready.then(function () { return api("POST", "/api/v1/leave", body); })
        .then(function (l) {
          show(done, "Applied for leave " + leaveSpan(l) + ".");
          form.reason.value = "";
          form.document.value = "";
          return load();
        }, function (e) { show(error, e.message); })
        .then(function () { submit.disabled = false; });
    });
    load();
  }

  // --- student: corrections -------------------------------------------------------------------

  function studentCorrections() {
    var form = document.getElementById("correction-form");
    var list = document.getElementById("correction-list");
    var error = document.getElementById("correction-error");
    var done = document.getElementById("correction-done");

    function render(c) {
      var li = el("li", "record-item correction-item");
      li.dataset.correctionId = c.id;
      li.dataset.status = c.status;
      var head = el("div", "head");
      head.appendChild(el("strong", "", c.course_code + " · " + when(c.session_starts_at)));
      head.appendChild(correctionChange(c));
      head.appendChild(stateTag(c.status));
      li.appendChild(head);
      li.appendChild(el("p", "reason", c.reason));
      if (c.decision_note) { li.appendChild(el("p", "muted", "Note: " + c.decision_note)); }
      if (c.status === "pending") {
        var actions = el("div", "actions");
        actions.appendChild(button("Withdraw", function (ev) {
          ev.target.disabled = true;
          api("POST", "/api/v1/corrections/" + c.id + "/withdraw", {}).then(load, function (e) { show(error, e.message); });
        }));
        li.appendChild(actions);
      }
      return li;
    }

    function load() {
      return api("GET", "/api/v1/corrections?limit=100").then(function (page) { fill(list, page.items, render); },
        function (e) { show(error, e.message); });
    }

    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      show(error, ""); show(done, "");
      if (!form.session_id.value) { show(error, "Choose a class."); return; }
      api("POST", "/api/v1/corrections", {
        session_id: form.session_id.value, requested_status: form.requested_status.value, reason: form.reason.value,
      }).then(function () {
        show(done, "Request sent to your teacher.");
        form.reason.value = "";
        return load();
      }, function (e) { show(error, e.message); });
    });
    load();
  }

  // --- faculty: queues ------------------------------------------------------------------------

  function facultyQueues() {
    var leaveList = document.getElementById("leave-queue");
    var correctionList = document.getElementById("correction-queue");
    var error = document.getElementById("queue-error");

    function decisionRow(path, onDone) {
      var actions = el("div", "actions");
      var note = el("input");
      note.type = "text";
      note.placeholder = "Note (optional)";
      note.maxLength = 1000;
      note.className = "decision-note";
      actions.appendChild(note);
      ["approve", "reject"].forEach(function (verb) {
        actions.appendChild(button(verb === "approve" ? "Approve" : "Reject", function (ev) {
          ev.target.disabled = true;
          api("POST", path + "/" + verb, { note: note.value }).then(onDone, function (e) {
            show(error, e.message); ev.target.disabled = false;
          });
        }, verb));
      });
      return actions;
    }

    function renderLeave(l) {
      var li = el("li", "record-item leave-item");
      li.dataset.leaveId = l.id;
      var head = el("div", "head");
      head.appendChild(el("strong", "", l.student_name));
      head.appendChild(el("span", "muted", l.roll_number));
      head.appendChild(el("span", "", leaveSpan(l)));
      li.appendChild(head);
      li.appendChild(el("p", "reason", l.reason));
      if (l.document) {
        var a = el("a", "", "Document: " + l.document.filename);
        a.href = l.document.url;
        li.appendChild(a);
      }
      li.appendChild(decisionRow("/api/v1/leave/" + l.id, load));
      return li;
    }

    function renderCorrection(c) {
      var li = el("li", "record-item correction-item");
      li.dataset.correctionId = c.id;
      var head = el("div", "head");
      head.appendChild(el("strong", "", c.student_name));
      head.appendChild(el("span", "muted", c.roll_number));
      head.appendChild(el("span", "", c.course_code + " · " + when(c.session_starts_at)));
      head.appendChild(correctionChange(c));
      li.appendChild(head);
      li.appendChild(el("p", "reason", c.reason));
      li.appendChild(decisionRow("/api/v1/corrections/" + c.id, load));
      return li;
    }

    function load() {
      show(error, "");
      return Promise.all([
        api("GET", "/api/v1/leave?status=applied&limit=100").then(function (page) {
          document.getElementById("leave-count").textContent = page.total;
          fill(leaveList, page.items, renderLeave);
        }),
        api("GET", "/api/v1/corrections?status=pending&limit=100").then(function (page) {
          document.getElementById("correction-count").textContent = page.total;
          fill(correctionList, page.items, renderCorrection);
        }),
      ]).catch(function (e) { show(error, e.message); });
    }
    load();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var page = document.body.dataset.page;
    if (page === "student-leave") { studentLeave(); }
    else if (page === "student-corrections") { studentCorrections(); }
    else if (page === "faculty-queues") { facultyQueues(); }
  });
})();
