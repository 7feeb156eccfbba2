// Syllabus page (/faculty/syllabus): add, rename, reorder, delete topics and set prerequisites, and the
// CSV import (preview, then apply), all through /api/v1 (web/routes/syllabus_api.py). The table is
// rebuilt from each answer; the pace chart (charts.js, data-chart="pace") reloads after each change.
(function () {
  "use strict";

  var el = window.CampusHub.el;
  var root, courseId, topics = [], coverage = {};

  var api = window.CampusHub.api;  // app.js: the one JSON API call

  // What a refused call says: the API's own sentence, or that the hub could not be reached.
  var problem = window.CampusHub.apiProblem;  // app.js: the API's sentence, or "No connection."
  // Tell the user beside anchor why a call was refused.
  function refusedAt(anchor) {
    return function (error) { window.CampusHub.feedback(anchor, problem(error), "error"); };
  }
  function titleOf(id) {
    var t = topics.filter(function (x) { return x.id === id; })[0];
    return t ? t.title : "";
  }

  function refresh() {
    // Either answer may fail on its own: the page keeps what it had for that one.
    function orNull() { return null; }
    return Promise.all([
      api("GET", "/api/v1/courses/" + encodeURIComponent(courseId) + "/syllabus").catch(orNull),
      api("GET", document.getElementById("pace-chart").dataset.series).catch(orNull),
    ]).then(function (answers) {
      if (answers[0]) { topics = answers[0].topics; }
      if (answers[1]) {
        coverage = {};
        answers[1].topics.forEach(function (t) { coverage[t.topic_id] = t; });
        window.CampusCharts.drawPace(document.getElementById("pace-chart"), answers[1]);
      }
      render();
    });
  }

  function button(text, cls, label, handler) {
    var b = el("button", cls, text);
    b.type = "button";
    if (label) { b.setAttribute("aria-label", label); }
    b.addEventListener("click", handler);
    return b;
  }

  function render() {
    var tbody = document.querySelector("#topic-table tbody");
    var rows = topics.map(function (t, i) {
      var tr = el("tr");
      tr.dataset.topicId = t.id;
      tr.appendChild(el("td", "num", String(t.position)));
      tr.appendChild(el("td", "topic-title", t.title));
      tr.appendChild(el("td", null, t.unit || "—"));
      tr.appendChild(el("td", "num", t.est_minutes + " min"));
      tr.appendChild(el("td", null, t.prerequisites.map(titleOf).join(", ") || "—"));
      var c = coverage[t.id];
      tr.appendChild(el("td", null, c && c.sessions ? c.sessions + (c.sessions === 1 ? " session · " : " sessions · ") + c.students_done + " of " + c.students +
        " done" + (c.students_need_review ? " · " + c.students_need_review + " to review" : "") : "—"));
      var actions = el("td", "topic-actions");
      actions.appendChild(button("↑", "btn-secondary inline", "Move " + t.title + " up", function () { move(i, -1, this); }));
      actions.appendChild(button("↓", "btn-secondary inline", "Move " + t.title + " down", function () { move(i, 1, this); }));
      actions.appendChild(button("Edit", "btn-secondary inline", "Edit " + t.title, function () { edit(t); }));
      actions.appendChild(button("Delete", "btn-danger inline", "Delete " + t.title, function () { remove(t, this); }));
      tr.appendChild(actions);
      return tr;
    });
    if (!rows.length) {
      var empty = el("tr");
      var td = el("td", "empty-state", "This course has no syllabus yet. Add its topics below, or import them from a spreadsheet.");
      td.colSpan = 7;
      empty.appendChild(td);
      rows = [empty];
    }
    tbody.replaceChildren.apply(tbody, rows);
    document.getElementById("sum-topics").textContent = topics.length;
    var minutes = topics.reduce(function (a, t) { return a + t.est_minutes; }, 0);
    document.getElementById("sum-hours").textContent = (minutes / 60).toFixed(1) + " h";
    fillPrerequisites(Number(document.getElementById("topic-id").value) || null);
  }

  function fillPrerequisites(editing) {
    var select = document.getElementById("topic-prereqs");
    var chosen = editing ? (topics.filter(function (t) { return t.id === editing; })[0] || { prerequisites: [] }).prerequisites : [];
    select.replaceChildren.apply(select, topics.filter(function (t) { return t.id !== editing; }).map(function (t) {
      var o = el("option", null, t.position + ". " + t.title);
      o.value = t.id;
      o.selected = chosen.indexOf(t.id) >= 0;
      return o;
    }));
  }

  function move(index, step, anchor) {
    var target = index + step;
    if (target < 0 || target >= topics.length) { return; }
    var order = topics.map(function (t) { return t.id; });
    var moved = order.splice(index, 1)[0];
    order.splice(target, 0, moved);
    api("PUT", "/api/v1/courses/" + encodeURIComponent(courseId) + "/syllabus/order", { order: order }).then(function (answer) {
      topics = answer.topics;
      render();
      var row = document.querySelector("#topic-table tr[data-topic-id=\"" + moved + "\"]");
      if (row) { window.CampusHub.feedback(row.querySelector(".topic-actions button:last-child"), "Moved to position " + (target + 1) + ".", "success"); }
    }, refusedAt(anchor));
  }

  function edit(t) {
    document.getElementById("topic-id").value = t.id;
    document.getElementById("topic-title").value = t.title;
    document.getElementById("topic-unit").value = t.unit || "";
    document.getElementById("topic-minutes").value = t.est_minutes;
    document.getElementById("editor-title").textContent = "Edit “" + t.title + "”";
    document.getElementById("topic-save").textContent = "Save changes";
    document.getElementById("topic-cancel").hidden = false;
    fillPrerequisites(t.id);
    document.getElementById("topic-title").focus();
  }

  function stopEditing() {
    document.getElementById("topic-form").reset();
    document.getElementById("topic-id").value = "";
    document.getElementById("editor-title").textContent = "Add a topic";
    document.getElementById("topic-save").textContent = "Add topic";
    document.getElementById("topic-cancel").hidden = true;
    fillPrerequisites(null);
  }

  function remove(t, anchor) {
    window.CampusHub.confirmAction("Delete “" + t.title + "”? Sessions tagged with it lose the tag, and students' progress in it is removed.",
      { confirmLabel: "Delete topic", cancelLabel: "Keep it" }).then(function (yes) {
      if (!yes) { return; }
      api("DELETE", "/api/v1/syllabus/topics/" + t.id).then(function () {
        refresh().then(function () {
          window.CampusHub.feedback(document.getElementById("topic-table").parentNode, "“" + t.title + "” was deleted.", "success");
        });
      }, refusedAt(anchor));
    });
  }

  function save(event) {
    event.preventDefault();
    var form = event.target;
    var id = Number(document.getElementById("topic-id").value) || null;
    var body = {
      title: document.getElementById("topic-title").value.trim(),
      unit: document.getElementById("topic-unit").value.trim() || null,
      est_minutes: Number(document.getElementById("topic-minutes").value),
      prerequisites: Array.prototype.map.call(document.getElementById("topic-prereqs").selectedOptions,
                                              function (o) { return Number(o.value); }),
    };
    if (!body.title) { window.CampusHub.feedback(form, "Give the topic a title.", "error"); return; }
    if (!(body.est_minutes >= 1 && body.est_minutes <= 6000)) {
      window.CampusHub.feedback(form, "The estimated time is between 1 and 6000 minutes.", "error");
      return;
    }
    var request = id ? api("PATCH", "/api/v1/syllabus/topics/" + id, body)
                     : api("POST", "/api/v1/courses/" + encodeURIComponent(courseId) + "/syllabus", body);
    request.then(function (topic) {
      stopEditing();
      refresh().then(function () {
        window.CampusHub.feedback(form, (id ? "Saved “" : "Added “") + topic.title + "”.", "success");
      });
    }, refusedAt(form));
  }

  // --- import -----------------------------------------------------------------------------------------

  function importText() {
    var file = document.getElementById("import-file").files[0];
    if (file) { return file.text(); }
    return Promise.resolve(document.getElementById("import-text").value);
  }

  // What an import answered (d), or why it was refused (refusal: a sentence, and each bad line).
  function showImport(dryRun, d, refusal, lines) {
    var box = document.getElementById("import-result");
    var parts = [];
    if (refusal) {
      parts.push(el("p", "feedback feedback-error", refusal));
      if (lines) {
        var ul = el("ul", "import-errors");
        lines.forEach(function (e) {
          ul.appendChild(el("li", null, "Line " + e.line + (e.field ? " (" + e.field + ")" : "") + ": " + e.reason));
        });
        parts.push(ul);
      }
    } else {
      var words = d.created + " new, " + d.updated + " changed, " + d.unchanged + " unchanged, " + d.kept + " kept after them.";
      parts.push(el("p", "feedback feedback-success", (dryRun ? "Preview: the import would give " : "Imported: ") +
        d.topics.length + " topics (" + words + ")"));
      if (dryRun) {
        var ol = el("ol", "import-preview");
        d.topics.forEach(function (t) { ol.appendChild(el("li", null, t.title + " · " + t.est_minutes + " min" + (t.unit ? " · " + t.unit : ""))); });
        parts.push(ol);
      }
    }
    parts.forEach(function (p) { p.setAttribute("role", refusal ? "alert" : "status"); });
    box.replaceChildren.apply(box, parts);
    if (box.scrollIntoView) { box.scrollIntoView({ block: "nearest" }); }
  }

  function runImport(dryRun) {
    importText().then(function (text) {
      if (!text.trim()) { showImport(dryRun, null, "Choose a CSV file or paste its text first."); return; }
      var url = "/api/v1/courses/" + encodeURIComponent(courseId) + "/syllabus/import" + (dryRun ? "?dry_run=1" : "");
      api("POST", url, { csv: text }, { tooLarge: "The file is too large." }).then(function (answer) {
        showImport(dryRun, answer);
        if (!dryRun) { refresh(); }
      }, function (error) { showImport(dryRun, null, problem(error), error.data && error.data.errors); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    root = document.getElementById("syllabus");
    if (!root) { return; }
    courseId = root.dataset.courseId;
    topics = JSON.parse(root.dataset.syllabus).topics;
    JSON.parse(root.dataset.coverage).topics.forEach(function (t) { coverage[t.topic_id] = t; });
    render();
    document.getElementById("topic-form").addEventListener("submit", save);
    document.getElementById("topic-cancel").addEventListener("click", stopEditing);
    document.getElementById("import-preview").addEventListener("click", function () { runImport(true); });
    document.getElementById("import-form").addEventListener("submit", function (event) { event.preventDefault(); runImport(false); });
  });
})();
