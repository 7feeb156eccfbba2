// The student's privacy page: give and withdraw biometric consent. Plain ES2017, no build step.
// Page: <body data-page="student-privacy">. Everything goes through the JSON API with the browser's
// cookies; after a change the page reloads, so what it shows is what the hub stored.
(function () {
  "use strict";

  var section = document.getElementById("biometric-consent");
  if (!section) { return; }
  var studentId = section.dataset.studentId;
  var base = "/api/v1/students/" + encodeURIComponent(studentId) + "/biometric-consent";
  var errorBox = document.getElementById("consent-error");
  var api = window.CampusHub.api;  // app.js: the one JSON API call

  function fail(err) {
    errorBox.textContent = err.message;
    errorBox.hidden = false;
  }

  function wire(formId, buttonId, path, body) {
    var form = document.getElementById(formId);
    if (!form) { return; }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      errorBox.hidden = true;
      var payload = body();
      if (payload === null) { return; }
      var button = document.getElementById(buttonId);
      button.disabled = true;
      api("POST", path, payload).then(function () { window.location.reload(); })
        .catch(function (err) { button.disabled = false; fail(err); });
    });
  }

  wire("consent-give-form", "consent-give", base, function () {
    if (!document.getElementById("consent-read").checked) {
      fail(new Error("Tick the box to say you have read the notice."));
      return null;
    }
    return { notice_version: section.dataset.noticeVersion };
  });
  wire("consent-withdraw-form", "consent-withdraw", base + "/withdraw", function () {
    return { reason: document.getElementById("consent-reason").value };
  });
}());
