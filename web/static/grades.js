// Grades: the student's what-if calculator, the faculty release control, the admin's grade scale and
// course credits. Plain ES2017, no build step; everything goes through the JSON API with the browser's cookies.
// Pages: <body data-page="student-grades" | "faculty-grades" | "admin-grading">.
(function () {
  "use strict";

  var hub = window.CampusHub;

  var api = hub.api;  // app.js: the one JSON API call

  function two(v) { return v === null || v === undefined ? "—" : Number(v).toFixed(2); }

  // --- student: what-if --------------------------------------------------------------------------

  function initWhatIf() {
    var form = document.getElementById("what-if-form");
    if (!form) { return; }
    var term = document.getElementById("what-if-term");
    var error = document.getElementById("what-if-error");
    var timer = null, asked = 0;

    function courses() {
      return Array.prototype.filter.call(form.querySelectorAll("fieldset.what-if-course"), function (f) {
        return f.dataset.termId === term.value;
      });
    }
    function showTerm() {
      form.querySelectorAll("fieldset.what-if-course").forEach(function (f) { f.hidden = f.dataset.termId !== term.value; });
    }
    function body() {
      return { term_id: term.value, courses: courses().map(function (f) {
        var hopes = [];
        f.querySelectorAll("input[data-assessment-id]").forEach(function (input) {
          if (input.value === "" || !input.checkValidity()) { return; }
          hopes.push({ assessment_id: Number(input.dataset.assessmentId), marks: Number(input.value) });
        });
        return { course_id: f.dataset.courseId, hopes: hopes };
      }) };
    }
    function show(result) {
      courses().forEach(function (f) {
        var out = f.querySelector(".what-if-result");
        var c = result.courses.filter(function (x) { return x.course_id === f.dataset.courseId; })[0];
        if (!c || c.percent === null) { out.textContent = "Enter a hoped-for mark to see this course's grade."; return; }
        out.textContent = "Grade " + c.letter + " (" + two(c.percent) + "%, " + two(c.points) + " points)" +
          (c.passes ? "" : ", not a pass") +
          (c.left_out ? ". " + c.left_out + " assessment" + (c.left_out === 1 ? " is" : "s are") + " left out until you enter a mark." : ".");
      });
      document.getElementById("what-if-term-gpa").textContent = two(result.term_gpa);
      document.getElementById("what-if-cumulative-gpa").textContent = two(result.cumulative_gpa);
    }
    function ask() {
      var invalid = Array.prototype.filter.call(form.querySelectorAll("input[data-assessment-id]"), function (i) {
        return !i.closest("fieldset").hidden && !i.checkValidity();
      });
      if (invalid.length) {
        error.textContent = "A hoped-for mark is from 0 to the assessment's maximum (" + invalid[0].dataset.max + ").";
        error.hidden = false;
        return;
      }
      var mine = ++asked;
      api("POST", "/api/v1/me/grades/what-if", body()).then(function (result) {
        if (mine !== asked) { return; }  // a later keystroke's answer wins
        error.hidden = true;
        show(result);
      }).catch(function (e) {
        if (mine !== asked) { return; }
        error.textContent = e.message;
        error.hidden = false;
      });
    }
    form.addEventListener("input", function (event) {
      if (event.target === term) { return; }
      clearTimeout(timer);
      timer = setTimeout(ask, 250);
    });
    form.addEventListener("submit", function (event) { event.preventDefault(); ask(); });
    term.addEventListener("change", function () { showTerm(); ask(); });
    showTerm();
    ask();
  }

  // --- faculty: course-term picker and release ------------------------------------------------------

  function initFacultyGrades() {
    var pick = document.getElementById("grades-course-term");
    if (pick) {
      pick.addEventListener("change", function () {
        var parts = pick.value.split("|");
        var form = document.getElementById("grades-picker");
        form.querySelector("input[name=course_id]").value = parts[0];
        form.querySelector("input[name=term_id]").value = parts[1];
        form.submit();
      });
    }
    var box = document.getElementById("release-box");
    var button = document.getElementById("release-button");
    if (!box || !button) { return; }
    button.addEventListener("click", function () {
      var d = box.dataset, missing = Number(d.missing);
      var text = button.dataset.finalize ? "Store the final results of " + d.code + "? They no longer change when marks or the scale change." :
        "Release the grades of " + d.code + " to " + d.students + " student" + (d.students === "1" ? "" : "s") + "?" +
        (missing ? " " + missing + " missing mark" + (missing === 1 ? "" : "s") + " will count 0." : "") + " This cannot be undone.";
      hub.confirmAction(text, { confirmLabel: button.dataset.finalize ? "Store results" : "Release", danger: false }).then(function (yes) {
        if (!yes) { return; }
        button.disabled = true;
        api("POST", "/api/v1/courses/" + encodeURIComponent(d.courseId) + "/terms/" + encodeURIComponent(d.termId) + "/grades/release")
          .then(function (r) {
            var state = document.getElementById("release-state");
            state.textContent = r.notified ? "Released: " + r.notified + " student" + (r.notified === 1 ? " was" : "s were") + " notified." +
              (r.finalized ? " " + r.finalized + " final result" + (r.finalized === 1 ? " was" : "s were") + " stored." : "") :
              r.finalized + " final result" + (r.finalized === 1 ? " was" : "s were") + " stored.";
            hub.feedback(button, "Done.", "success");
            button.hidden = true;
          })
          .catch(function (e) { button.disabled = false; hub.feedback(button, e.message, "error"); });
      });
    });
  }

  // --- admin: grade scale and credits -----------------------------------------------------------------

  function initScaleEditor() {
    var form = document.getElementById("scale-form");
    if (!form) { return; }
    var tbody = document.querySelector("#scale-bands tbody");
    var template = tbody.querySelector("tr.band-row");

    function rows() { return Array.prototype.slice.call(tbody.querySelectorAll("tr.band-row")); }
    tbody.addEventListener("click", function (event) {
      var remove = event.target.closest(".band-remove");
      if (remove && rows().length > 1) { remove.closest("tr").remove(); }
    });
    document.getElementById("band-add").addEventListener("click", function () {
      var row = template.cloneNode(true);
      row.querySelectorAll("input").forEach(function (i) { if (i.type === "checkbox") { i.checked = false; } else { i.value = ""; } });
      tbody.appendChild(row);
      row.querySelector("input").focus();
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var bands = rows().map(function (r) {
        return { letter: r.querySelector(".band-letter").value.trim(), min_percent: Number(r.querySelector(".band-min").value),
                 points: Number(r.querySelector(".band-points").value), is_pass: r.querySelector(".band-pass").checked };
      });
      var save = document.getElementById("scale-save");
      form.querySelectorAll("[aria-invalid]").forEach(function (n) { n.removeAttribute("aria-invalid"); });
      api("PUT", "/api/v1/grade-scale", { name: document.getElementById("scale-name").value, kind: document.getElementById("scale-kind").value,
                                           bands: bands })
        .then(function () { hub.feedback(save, "Saved. Running courses use the new scale from now on.", "success"); })
        .catch(function (e) {
          var m = /^bands\[(\d+)\]\.(\w+)/.exec(e.field || "");
          if (m) {
            var cls = { letter: ".band-letter", min_percent: ".band-min", points: ".band-points", is_pass: ".band-pass" }[m[2]];
            var input = rows()[Number(m[1])] && rows()[Number(m[1])].querySelector(cls);
            if (input) { input.setAttribute("aria-invalid", "true"); }
          }
          hub.feedback(save, e.message, "error");
        });
    });
  }

  function initCredits() {
    var table = document.getElementById("course-credits");
    if (!table) { return; }
    table.addEventListener("click", function (event) {
      var button = event.target.closest(".credits-save");
      if (!button) { return; }
      var row = button.closest("tr");
      var value = row.querySelector(".credits-input").value;
      api("PUT", "/api/v1/courses/" + encodeURIComponent(row.dataset.courseId) + "/credits", { credits: Number(value) })
        .then(function (r) { hub.feedback(button, "Saved: " + r.credits + " credits.", "success"); })
        .catch(function (e) { hub.feedback(button, e.message, "error"); });
    });
  }

  function init() {
    var page = document.body.dataset.page;
    if (page === "student-grades") { initWhatIf(); }
    if (page === "faculty-grades") { initFacultyGrades(); }
    if (page === "admin-grading") { initScaleEditor(); initCredits(); }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
