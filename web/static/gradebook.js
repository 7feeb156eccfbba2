// The faculty gradebook: marks edited in place, pasted marks, new assessments, exam sittings with
// their clash check. Plain ES2017, no build step. Page: <body data-page="faculty-gradebook">.
// Everything goes through the JSON API (web/routes/assessments_api.py) with the browser's cookies.
(function () {
  "use strict";

  // "1 mark", "3 marks": a count with its noun.
  function count(n, one, many) { return n + " " + (n === 1 ? one : (many || one + "s")); }

  var api = window.CampusHub.api;  // app.js: the one JSON API call

  // A refused paste or file: the API's ``errors`` (line, field, reason), one sentence each.
  function lineErrors(error) {
    return error.data && error.data.errors ? error.data.errors.map(function (e) { return "Line " + e.line + ": " + e.reason; }) : [];
  }

  // "AB" absent, "EX" exempt, a number graded; "" means nothing to save.
  function parseMark(text) {
    var t = text.trim().toUpperCase();
    if (t === "") { return null; }
    if (t === "AB" || t === "ABSENT") { return { status: "absent" }; }
    if (t === "EX" || t === "EXEMPT") { return { status: "exempt" }; }
    var n = Number(t.replace(",", "."));
    if (!isFinite(n)) { return { error: "Type a number, AB (absent) or EX (exempt)." }; }
    return { status: "graded", marks: n };
  }

  // The running grade is computed by the server (hub/domain/grades.py): ask again after a change.
  function refreshRunning(root, studentId) {
    var url = "/api/v1/courses/" + encodeURIComponent(root.dataset.courseId) + "/gradebook?term_id=" + encodeURIComponent(root.dataset.termId);
    api("GET", url).then(function (book) {
      book.students.forEach(function (s) {
        if (s.student_id !== studentId) { return; }
        var cell = root.querySelector("td[data-running=\"" + CSS.escape(studentId) + "\"]");
        if (cell) { cell.textContent = s.running_percent === null ? "—" : s.running_percent.toFixed(2) + "%"; }
      });
    }).catch(function () { /* the mark is saved; the figure refreshes with the page */ });
  }

  function initCsvForm(form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var file = form.elements.file.files[0];
      if (!file) { window.CampusHub.feedback(form, "Choose a CSV file first.", "error"); return; }
      file.text().then(function (text) {
        return api("POST", "/api/v1/assessments/" + form.elements.assessment_id.value + "/marks/import", { csv: text });
      }).then(function (data) {
        window.CampusHub.feedback(form, count(data.changed, "mark") + " recorded, " + data.unchanged + " already so. Reloading…", "success");
        setTimeout(function () { window.location.reload(); }, 1200);
      }).catch(function (error) {
        window.CampusHub.feedback(form, [error.message].concat(lineErrors(error)).join(" "), "error");
      });
    });
  }

  function initCells(root) {
    root.querySelectorAll("input.mark-input").forEach(function (input) {
      input.addEventListener("change", function () {
        var parsed = parseMark(input.value);
        if (parsed === null) { input.value = input.dataset.saved; return; }
        if (parsed.error) {
          input.setAttribute("aria-invalid", "true");
          window.CampusHub.feedback(input, parsed.error, "error");
          return;
        }
        var body = { status: parsed.status };
        if (parsed.status === "graded") { body.marks = parsed.marks; }
        input.disabled = true;
        api("PUT", "/api/v1/assessments/" + input.dataset.assessmentId + "/marks/" + encodeURIComponent(input.dataset.studentId), body)
          .then(function (data) {
            var m = data.mark;
            var shown = m.status === "absent" ? "AB" : (m.status === "exempt" ? "EX" : String(m.marks));
            input.value = shown;
            input.dataset.saved = shown;
            input.removeAttribute("aria-invalid");
            input.closest("td").classList.add("mark-saved");
            window.CampusHub.feedback(input, data.changed ? "Saved" : "No change", "success");
            if (data.changed) { refreshRunning(root, input.dataset.studentId); }
          })
          .catch(function (error) {
            input.setAttribute("aria-invalid", "true");
            window.CampusHub.feedback(input, error.message, "error");
          })
          .then(function () { input.disabled = false; });
      });
    });
  }

  function initAssessmentForm(root, form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var f = form.elements;
      var body = { term_id: root.dataset.termId, kind: f.kind.value, title: f.title.value.trim(),
                   max_marks: Number(f.max_marks.value), weight: Number(f.weight.value) };
      if (f.held_on.value) { body.held_on = f.held_on.value; }
      if (f.section_id.value) { body.section_id = f.section_id.value; }
      api("POST", "/api/v1/courses/" + encodeURIComponent(root.dataset.courseId) + "/assessments", body)
        .then(function (a) {
          window.CampusHub.feedback(form, a.title + " added. Reloading the gradebook…", "success");
          setTimeout(function () { window.location.reload(); }, 800);
        })
        .catch(function (error) { window.CampusHub.feedback(form, error.message, "error"); });
    });
  }

  function initBulkForm(form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var marks = [];
      var sourceLine = [];  // the textarea line of each entry of ``marks``
      var problems = [];
      form.elements.lines.value.split(/\r?\n/).forEach(function (line, i) {
        if (!line.trim()) { return; }
        var parts = line.split(/[,\t;]/);
        var parsed = parseMark(parts[1] || "");
        if (!parts[0].trim() || parsed === null || parsed.error) {
          problems.push("Line " + (i + 1) + ": write a roll number, then marks, AB or EX.");
          return;
        }
        var entry = { roll_number: parts[0].trim(), status: parsed.status };
        if (parsed.status === "graded") { entry.marks = parsed.marks; }
        marks.push(entry);
        sourceLine.push(i + 1);
      });
      if (problems.length || !marks.length) {
        window.CampusHub.feedback(form, problems.length ? problems.join(" ") : "Paste at least one line.", "error");
        return;
      }
      api("POST", "/api/v1/assessments/" + form.elements.assessment_id.value + "/marks", { marks: marks })
        .then(function (data) {
          window.CampusHub.feedback(form, count(data.changed.length, "mark") + " recorded, " + data.unchanged + " already so. Reloading…", "success");
          setTimeout(function () { window.location.reload(); }, 1200);
        })
        .catch(function (error) {
          var lines = (error.data && error.data.errors ? error.data.errors : []).map(function (e) {
            return "Line " + (sourceLine[e.line - 1] || e.line) + ": " + e.reason;
          });
          window.CampusHub.feedback(form, [error.message].concat(lines).join(" "), "error");
        });
    });
  }

  function sittingBody(form) {
    var f = form.elements;
    var body = { room_id: f.room_id.value, note: f.note.value.trim(),
                 starts_at: f.starts_at.value ? new Date(f.starts_at.value).toISOString() : "",
                 ends_at: f.ends_at.value ? new Date(f.ends_at.value).toISOString() : "" };
    if (f.section_id.value) { body.section_id = f.section_id.value; } else { body.student_id = f.student_id.value; }
    return body;
  }

  function showClashes(list, clashes) {
    list.textContent = "";
    clashes.forEach(function (c) { list.appendChild(window.CampusHub.el("li", "clash clash-" + c.kind, c.reason)); });
    list.hidden = !clashes.length;
  }

  function initSittingForm(form) {
    var list = document.getElementById("sitting-clashes");
    var check = document.getElementById("sitting-check");
    function path(suffix) { return "/api/v1/assessments/" + form.elements.assessment_id.value + "/sittings" + suffix; }
    check.addEventListener("click", function () {
      if (!form.reportValidity()) { return; }
      api("POST", path("/check"), sittingBody(form))
        .then(function (data) {
          showClashes(list, data.clashes);
          window.CampusHub.feedback(check, data.ok ? "No clashes: the room and the students are free then." : count(data.clashes.length, "clash", "clashes") + ": see below.", data.ok ? "success" : "error");
        })
        .catch(function (error) { window.CampusHub.feedback(check, error.message, "error"); });
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      api("POST", path(""), sittingBody(form))
        .then(function (s) {
          showClashes(list, []);
          window.CampusHub.feedback(form, "Scheduled: " + count(s.sitters, "student") + (s.sitters === 1 ? " was" : " were") + " told. Reloading…", "success");
          setTimeout(function () { window.location.reload(); }, 1200);
        })
        .catch(function (error) {
          showClashes(list, error.data && error.data.clashes ? error.data.clashes : []);
          window.CampusHub.feedback(form, error.data && error.data.clashes ? "Not scheduled: it clashes (see below)." : error.message, "error");
        });
    });
  }

  function initSittingDelete(root) {
    root.querySelectorAll("button.sitting-delete").forEach(function (button) {
      button.addEventListener("click", function () {
        window.CampusHub.confirmAction("Cancel this sitting? Its students will no longer see it in their exams.", { confirmLabel: "Cancel sitting", cancelLabel: "Keep it" })
          .then(function (ok) {
            if (!ok) { return; }
            api("DELETE", "/api/v1/sittings/" + button.dataset.sittingId)
              .then(function () {
                window.CampusHub.feedback(button, "Sitting cancelled.", "success");
                button.disabled = true;
              })
              .catch(function (error) { window.CampusHub.feedback(button, error.message, "error"); });
          });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (document.body.dataset.page !== "faculty-gradebook") { return; }
    var root = document.getElementById("gradebook-root");
    if (!root) { return; }
    initCells(root);
    var form = document.getElementById("assessment-form");
    if (form) { initAssessmentForm(root, form); }
    var bulk = document.getElementById("bulk-form");
    if (bulk) { initBulkForm(bulk); }
    var csv = document.getElementById("csv-form");
    if (csv) { initCsvForm(csv); }
    var sitting = document.getElementById("sitting-form");
    if (sitting) { initSittingForm(sitting); }
    initSittingDelete(root);
  });
})();
