// Assignments: the faculty's list, grading queue and CSV import; the student's submissions and receipts.
// Pages: <body data-page="faculty-assignments" | "student-assignments">. Plain ES2017, no build step.
// Everything goes through the JSON API (/api/v1/assignments) with the browser's cookies.
(function () {
  "use strict";

  var page = document.body.dataset.page;
  if (page !== "faculty-assignments" && page !== "student-assignments") { return; }
  var CH = window.CampusHub;
  var el = CH.el;

  function when(iso) {
    if (!iso) { return "—"; }
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString([], { day: "2-digit", month: "short", year: "numeric",
                                                   hour: "2-digit", minute: "2-digit" });
  }

  // app.js: the one JSON API call; a refused upload is worded for this page's files.
  function api(method, path, body) { return CH.api(method, path, body, { tooLarge: "The files are too large." }); }

  function readFile(file) {
    return new Promise(function (resolve, reject) {
      var reader = new FileReader();
      reader.onload = function () {
        var url = String(reader.result);
        resolve({ filename: file.name, data_base64: url.slice(url.indexOf(",") + 1) });
      };
      reader.onerror = function () { reject(new Error("Could not read " + file.name + ".")); };
      reader.readAsDataURL(file);
    });
  }

  // The API sends decimals as strings ("20.00"); people read "20".
  function num(value) { return value === null || value === undefined ? "" : String(Number(value)); }

  function marksText(mark, max) {
    if (!mark) { return ""; }
    if (mark.marks === null) { return "Returned: marks show once the grades are released."; }
    return num(mark.marks) + " / " + num(max) + " marks" + (mark.raw_marks !== mark.marks ? " (given " + num(mark.raw_marks) + ")" : "");
  }

  // --- student --------------------------------------------------------------------------------

  function studentCard(a) {
    var card = el("article", "card assignment-card");
    card.dataset.assignmentId = a.id;
    card.appendChild(el("h2", null, a.course_code + " · " + a.title));
    var facts = el("p", "assignment-facts");
    facts.appendChild(el("span", null, "Due " + when(a.due_at)));
    if (a.cut_off_at) { facts.appendChild(el("span", null, " · no submissions after " + when(a.cut_off_at))); }
    facts.appendChild(el("span", null, " · out of " + num(a.max_marks) + " marks, " +
      (Number(a.weight) > 0 ? num(a.weight) + " % of the course grade" : "practice: it does not count toward the course grade")));
    card.appendChild(facts);
    if (Number(a.penalty_percent) > 0) {
      card.appendChild(el("p", "muted", "Late work loses " + num(a.penalty_percent) + " % of the marks per " +
        (a.penalty_period === "day" ? "day late (pro rata)" : "started day late") +
        (a.grace_minutes ? ", after " + a.grace_minutes + " min of grace" : "") +
        ", at most " + num(a.penalty_cap_percent) + " %" +
        (a.pass_percent !== null ? "; work that passed never drops below " + num(a.pass_percent) + " %" : "") + "."));
    }
    if (a.instructions) { card.appendChild(el("p", "instructions", a.instructions)); }
    if (a.attachments.length) {
      var files = el("ul", "attachment-list");
      a.attachments.forEach(function (f) {
        var li = el("li");
        var link = el("a", null, f.filename);
        link.href = f.url;
        li.appendChild(link);
        files.appendChild(li);
      });
      card.appendChild(files);
    }
    var status = el("div", "assignment-status");
    card.appendChild(status);
    var form = el("form", "submit-form");
    form.noValidate = true;
    var textId = "text-" + a.id, fileId = "files-" + a.id;
    var label = el("label", null, "Your answer (text)");
    label.htmlFor = textId;
    var text = el("textarea");
    text.id = textId;
    text.rows = 3;
    text.maxLength = 50000;
    var fileLabel = el("label", null, "Files (PDF, JPEG or PNG)");
    fileLabel.htmlFor = fileId;
    var input = el("input");
    input.type = "file";
    input.id = fileId;
    input.multiple = true;
    input.accept = "application/pdf,image/jpeg,image/png";
    var button = el("button", null, "Submit");
    button.type = "submit";
    button.className = "submit-work";
    form.append(label, text, fileLabel, input, button);
    card.appendChild(form);
    // Past the (student's own) cut-off the API refuses work: say so instead of offering a form that fails.
    var closedNote = el("p", "muted closed-note", "");
    closedNote.hidden = true;
    card.appendChild(closedNote);

    function refresh() {
      return api("GET", "/api/v1/assignments/" + a.id + "/mine").then(function (mine) {
        status.textContent = "";
        if (mine.extended) { status.appendChild(el("p", "muted", "Your extension: due " + when(mine.due_at) + ".")); }
        var latest = mine.submissions[0];
        if (!latest) {
          status.appendChild(el("p", "empty", "Not submitted yet."));
        } else {
          var receipt = el("p", "receipt");
          receipt.appendChild(el("strong", null, "Attempt " + latest.attempt + " received " + when(latest.submitted_at)));
          receipt.appendChild(el("span", null, latest.late ? " (" + latest.late + " late)" : " (on time)"));
          receipt.appendChild(el("br"));
          receipt.appendChild(el("span", "hash", "Receipt SHA-256: " + latest.sha256));
          status.appendChild(receipt);
          status.appendChild(el("p", "status-line", latest.status === "returned" ? "Status: returned" : "Status: submitted, waiting to be graded"));
        }
        if (mine.mark) {
          var m = el("div", "mark");
          var shown = marksText(mine.mark, a.max_marks);
          m.appendChild(el("p", "marks", shown));
          if (mine.mark.penalty_note) { m.appendChild(el("p", "muted", mine.mark.penalty_note)); }
          if (mine.mark.feedback) { m.appendChild(el("p", "feedback-text", "Feedback: " + mine.mark.feedback)); }
          status.appendChild(m);
          form.hidden = true;
        }
        var closed = !mine.mark && mine.cut_off_at && new Date(mine.cut_off_at) < new Date();
        if (closed) {
          form.hidden = true;
          closedNote.textContent = "The cut-off (" + when(mine.cut_off_at) + ") has passed, so no more work can be " +
            "handed in here. If you need more time, ask your teacher for an extension.";
        }
        closedNote.hidden = !closed;
      });
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      button.disabled = true;
      Promise.all(Array.prototype.map.call(input.files, readFile)).then(function (files) {
        return api("POST", "/api/v1/assignments/" + a.id + "/submissions", { text: text.value, files: files });
      }).then(function (sub) {
        CH.feedback(form, "Submitted: attempt " + sub.attempt + " at " + when(sub.submitted_at) +
          ". Receipt SHA-256: " + sub.sha256, "success");
        input.value = "";
        return refresh();
      }).catch(function (error) {
        CH.feedback(form, error.message, "error");
      }).then(function () { button.disabled = false; });
    });
    refresh().catch(function (error) { status.textContent = error.message; });
    return card;
  }

  function initStudent() {
    var list = document.getElementById("assignment-list");
    api("GET", "/api/v1/assignments").then(function (data) {
      list.textContent = "";
      if (!data.items.length) {
        list.appendChild(el("p", "empty", "No assignments yet. When a teacher publishes one for your courses, it appears here and you get a notification."));
        return;
      }
      data.items.forEach(function (a) { list.appendChild(studentCard(a)); });
    }).catch(function (error) { list.textContent = error.message; });
  }

  // --- faculty --------------------------------------------------------------------------------

  var current = null;  // the assignment whose queue is open

  function initFaculty() {
    var table = document.getElementById("assignment-table");

    function load() {
      return api("GET", "/api/v1/assignments").then(function (data) {
        table.textContent = "";
        if (!data.items.length) {
          table.appendChild(el("p", "empty", "No assignments yet. Create one below: it stays a draft until you publish it."));
          return;
        }
        var t = el("table");
        var head = el("tr");
        ["Assignment", "Due", "Status", "Submitted", "Returned", ""].forEach(function (h) { head.appendChild(el("th", null, h)); });
        t.createTHead().appendChild(head);
        var body = t.createTBody();
        data.items.forEach(function (a) {
          var tr = el("tr");
          tr.dataset.assignmentId = a.id;
          tr.appendChild(el("td", null, a.course_code + " · " + a.title));
          tr.appendChild(el("td", null, when(a.due_at)));
          tr.appendChild(el("td", "status-cell", a.published_at ? "Published" : "Draft"));
          tr.appendChild(el("td", null, a.submitted + " of " + a.students + " students"));
          tr.appendChild(el("td", null, a.returned + " students"));
          var actions = el("td", "actions");
          if (!a.published_at) {
            var pub = el("button", "secondary publish", "Publish");
            pub.type = "button";
            pub.addEventListener("click", function () {
              api("POST", "/api/v1/assignments/" + a.id + "/publish", {}).then(function () {
                CH.feedback(pub, "Published: students were notified.", "success");
                tr.querySelector(".status-cell").textContent = "Published";
              }).catch(function (error) { CH.feedback(pub, error.message, "error"); });
            });
            actions.appendChild(pub);
          }
          var open = el("button", "secondary open-queue", "Grading queue");
          open.type = "button";
          open.addEventListener("click", function () { openQueue(a); });
          actions.appendChild(open);
          tr.appendChild(actions);
          body.appendChild(tr);
        });
        table.appendChild(t);
      }).catch(function (error) { table.textContent = error.message; });
    }

    var form = document.getElementById("assignment-form");
    if (form) {
      var section = document.getElementById("as-section");
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        var v = function (id) { return document.getElementById(id).value; };
        var iso = function (local) { return local ? new Date(local).toISOString() : null; };
        if (!v("as-title").trim() || !v("as-due")) {
          CH.feedback(form, "Give the assignment a title and a due date.", "error");
          return;
        }
        var rubric = v("as-rubric").split("\n").map(function (line) { return line.trim(); }).filter(Boolean).map(function (line) {
          var cut = line.lastIndexOf(";");
          return { criterion: line.slice(0, cut).trim(), max_points: line.slice(cut + 1).trim() };
        });
        var body = {
          course_id: v("as-course"), term_id: v("as-term"), section_id: section.value || null,
          title: v("as-title"), instructions: v("as-instructions"), due_at: iso(v("as-due")),
          cut_off_at: iso(v("as-cutoff")), max_marks: v("as-max"), weight: v("as-weight") || "0",
          max_attempts: Number(v("as-attempts")), grace_minutes: Number(v("as-grace") || 0),
          penalty_percent: v("as-penalty") || "0", penalty_period: v("as-period"),
          penalty_cap_percent: v("as-cap") || "100", pass_percent: v("as-pass") || null, rubric: rubric,
        };
        api("POST", "/api/v1/assignments", body).then(function (a) {
          CH.feedback(form, "Saved as a draft: " + a.title + ". Publish it from the list when it is ready.", "success");
          form.reset();
          return load();
        }).catch(function (error) { CH.feedback(form, error.message, "error"); });
      });
    }

    var csvForm = document.getElementById("csv-form");
    function csv(apply) {
      var result = document.getElementById("csv-result");
      return api("POST", "/api/v1/assignments/" + current.id + "/marks/import",
                 { csv: document.getElementById("csv-text").value || " ", apply: apply }).then(function (r) {
        result.textContent = "";
        if (r.errors.length) {
          var errs = el("ul", "csv-errors");
          r.errors.forEach(function (e) { errs.appendChild(el("li", null, "Line " + e.line + ": " + e.message)); });
          result.appendChild(errs);
        }
        var words = r.applied ? r.rows.length + " marks imported and returned to the students."
          : (r.errors.length ? "Nothing imported: fix the lines above first." : r.rows.length + " marks ready to import.");
        CH.feedback(csvForm, words, r.errors.length ? "error" : "success");
        if (r.applied) { openQueue(current); }
      }).catch(function (error) { CH.feedback(csvForm, error.message, "error"); });
    }
    document.getElementById("csv-preview").addEventListener("click", function () { csv(false); });
    csvForm.addEventListener("submit", function (event) { event.preventDefault(); csv(true); });

    load();
  }

  function openQueue(a) {
    current = a;
    var card = document.getElementById("queue-card");
    card.hidden = false;
    document.getElementById("queue-title").textContent = "Grading queue: " + a.course_code + " · " + a.title;
    document.getElementById("queue-zip").href = "/api/v1/assignments/" + a.id + "/submissions.zip";
    var holder = document.getElementById("queue-table");
    holder.textContent = "Loading…";
    api("GET", "/api/v1/assignments/" + a.id).then(function (full) {
      return api("GET", "/api/v1/assignments/" + a.id + "/queue").then(function (q) { render(full, q); });
    }).catch(function (error) { holder.textContent = error.message; });
    card.scrollIntoView({ block: "start" });

    function render(full, q) {
      holder.textContent = "";
      if (!q.items.length) {
        holder.appendChild(el("p", "empty", "No students are enrolled for this assignment yet."));
        return;
      }
      holder.appendChild(el("p", "muted", q.waiting + " submissions waiting to be graded."));
      var t = el("table");
      var head = el("tr");
      ["Student", "Submission", "Marks", "Feedback", ""].forEach(function (h) { head.appendChild(el("th", null, h)); });
      t.createTHead().appendChild(head);
      var body = t.createTBody();
      q.items.forEach(function (row) {
        var tr = el("tr");
        tr.dataset.studentId = row.student_id;
        tr.appendChild(el("td", null, row.student_name + " (" + row.roll_number + ")" + (row.extended ? " · extension to " + when(row.due_at) : "")));
        var sub = el("td");
        if (!row.submission) {
          sub.appendChild(el("span", "muted", "Not submitted"));
        } else {
          sub.appendChild(el("span", null, "Attempt " + row.submission.attempt + ", " + when(row.submission.submitted_at) +
            (row.submission.late ? " · " + row.submission.late + " late" : " · on time")));
          row.submission.files.forEach(function (f) {
            var link = el("a", "file-link", f.filename);
            link.href = f.url;
            sub.appendChild(el("br"));
            sub.appendChild(link);
          });
          if (row.submission.text) { sub.appendChild(el("p", "submitted-text", row.submission.text)); }
        }
        tr.appendChild(sub);
        var marksCell = el("td", "marks-cell");
        var inputs = [];
        var marksInput = el("input");
        marksInput.type = "number";
        marksInput.min = "0";
        marksInput.max = full.max_marks;
        marksInput.step = "0.01";
        marksInput.className = "marks-input";
        marksInput.setAttribute("aria-label", "Marks for " + row.student_name + " out of " + full.max_marks);
        if (row.mark && row.mark.raw_marks !== null) { marksInput.value = row.mark.raw_marks; }
        if (full.rubric.length) {
          full.rubric.forEach(function (c) {
            var box = el("input");
            box.type = "number";
            box.min = "0";
            box.max = c.max_points;
            box.step = "0.5";
            box.className = "rubric-input";
            box.dataset.criterionId = c.id;
            box.setAttribute("aria-label", c.criterion + " (out of " + c.max_points + ") for " + row.student_name);
            var given = row.mark && row.mark.rubric.filter(function (r) { return r.criterion_id === c.id; })[0];
            if (given) { box.value = given.points; }
            var lab = el("label", "rubric-label", c.criterion + " / " + c.max_points + " ");
            lab.appendChild(box);
            marksCell.appendChild(lab);
            inputs.push(box);
          });
        } else {
          marksCell.appendChild(marksInput);
          marksCell.appendChild(el("span", "muted", " / " + full.max_marks));
        }
        if (row.mark && row.mark.penalty_note) { marksCell.appendChild(el("p", "muted penalty", row.mark.penalty_note)); }
        tr.appendChild(marksCell);
        var fbCell = el("td");
        var fb = el("textarea");
        fb.rows = 2;
        fb.maxLength = 5000;
        fb.setAttribute("aria-label", "Feedback for " + row.student_name);
        if (row.mark && row.mark.feedback) { fb.value = row.mark.feedback; }
        fbCell.appendChild(fb);
        tr.appendChild(fbCell);
        var act = el("td");
        if (row.submission) {
          var go = el("button", "grade-button", row.mark ? "Save and return again" : "Grade and return");
          go.type = "button";
          go.addEventListener("click", function () {
            var payload = { student_id: row.student_id, feedback: fb.value };
            if (inputs.length) {
              payload.rubric = inputs.map(function (b) { return { criterion_id: Number(b.dataset.criterionId), points: b.value || "0" }; });
            } else {
              if (marksInput.value === "") { CH.feedback(go, "Enter the marks first.", "error"); return; }
              payload.raw_marks = marksInput.value;
            }
            go.disabled = true;
            api("POST", "/api/v1/assignments/" + full.id + "/grades", payload).then(function (g) {
              CH.feedback(go, "Returned: " + g.marks + " / " + full.max_marks + " marks" +
                (g.penalty_note ? " after the late penalty" : "") + ".", "success");
            }).catch(function (error) { CH.feedback(go, error.message, "error"); }).then(function () { go.disabled = false; });
          });
          act.appendChild(go);
        }
        tr.appendChild(act);
        body.appendChild(tr);
      });
      holder.appendChild(t);
    }
  }

  if (page === "student-assignments") { initStudent(); } else { initFaculty(); }
})();
