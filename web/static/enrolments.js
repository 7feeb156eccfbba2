// The ops device page's fingerprint enrolments: enrol a consenting student (optionally with a template
// file), remove one, and (admin) record a consent given on paper. Plain ES2017, no build step.
// Everything goes through the JSON API with the browser's cookies; the page then reloads, so what it
// shows is what the hub stored (each terminal's state follows its acks).
(function () {
  "use strict";

  var form = document.getElementById("enrol-form");
  if (!form) { return; }
  var deviceId = form.dataset.deviceId;
  var errorBox = document.getElementById("enrol-error");
  var api = window.CampusHub.api;  // app.js: the one JSON API call

  function fail(err) { errorBox.textContent = err.message; errorBox.hidden = false; }
  function done() { window.location.reload(); }

  // The template file as base64 (null without one); it goes to the terminal sealed and is not kept.
  function templateBase64() {
    var input = document.getElementById("enrol-template");
    if (!input.files || !input.files.length) { return Promise.resolve(null); }
    return input.files[0].arrayBuffer().then(function (buffer) {
      var bytes = new Uint8Array(buffer);
      var text = "";
      for (var i = 0; i < bytes.length; i++) { text += String.fromCharCode(bytes[i]); }
      return btoa(text);
    });
  }

  function student() { return document.getElementById("enrol-student").value.trim(); }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    errorBox.hidden = true;
    var page = parseInt(document.getElementById("enrol-page").value, 10);
    templateBase64().then(function (template) {
      var body = { page: page };
      if (template !== null) { body.template = template; }
      return api("POST", "/api/v1/devices/" + encodeURIComponent(deviceId) + "/enrolments/"
                 + encodeURIComponent(student()), body, { tooLarge: "The template file is too large." });
    }).then(done).catch(fail);
  });

  var paper = document.getElementById("enrol-paper-consent");
  if (paper) {
    paper.addEventListener("click", function () {
      errorBox.hidden = true;
      if (!student()) { fail(new Error("Type the student id first.")); return; }
      api("POST", "/api/v1/students/" + encodeURIComponent(student()) + "/biometric-consent",
          { notice_version: form.dataset.noticeVersion }).then(function () {
        var note = document.getElementById("enrol-done");
        note.textContent = "Consent recorded (given on paper).";
        note.hidden = false;
      }).catch(fail);
    });
  }

  document.querySelectorAll("button.enrol-remove").forEach(function (button) {
    button.addEventListener("click", function () {
      errorBox.hidden = true;
      button.disabled = true;
      api("DELETE", "/api/v1/devices/" + encodeURIComponent(deviceId) + "/enrolments/"
          + encodeURIComponent(button.dataset.studentId)).then(done)
        .catch(function (err) { button.disabled = false; fail(err); });
    });
  });
}());
