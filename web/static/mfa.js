// The two-factor authentication page (web/templates/mfa.html): enrol, confirm, new recovery codes,
// turn off. Everything goes through /api/v1/me/mfa* (web/routes/mfa_api.py) with CampusHub.api.
(function () {
  "use strict";

  var api = window.CampusHub.api;  // app.js: the one JSON API call

  function byId(id) { return document.getElementById(id); }

  function showError(error) {
    var box = byId("mfa-error");
    box.textContent = error ? error.message : "";
    box.hidden = !error;
  }

  function showRecoveryCodes(codes) {
    var list = byId("mfa-recovery-codes");
    list.textContent = "";
    codes.forEach(function (code) {
      var item = document.createElement("li");
      item.textContent = code;
      list.appendChild(item);
    });
    byId("mfa-recovery").hidden = false;
  }

  function onSubmit(id, handler) {
    var form = byId(id);
    if (!form) { return; }
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      showError(null);
      try { await handler(form); } catch (error) { showError(error); }
    });
  }

  function init() {
    var start = byId("mfa-start");
    if (start) {
      start.addEventListener("click", async function () {
        showError(null);
        try {
          var enrolment = await api("POST", "/api/v1/me/mfa/enrolment", {});
          byId("mfa-qr").src = enrolment.qr_svg;
          byId("mfa-secret").textContent = enrolment.secret;
          byId("mfa-start-box").hidden = true;
          byId("mfa-enrol").hidden = false;
          byId("mfa-confirm-code").focus();
        } catch (error) { showError(error); }
      });
    }
    onSubmit("mfa-confirm-form", async function (form) {
      var result = await api("POST", "/api/v1/me/mfa/enrolment/confirm", { code: form.code.value.trim() });
      byId("mfa-enrol").hidden = true;
      byId("mfa-status").textContent = "On: logins ask for a code from your authenticator app.";
      var required = byId("mfa-required");
      if (required) { required.hidden = true; }
      showRecoveryCodes(result.recovery_codes);
    });
    onSubmit("mfa-regenerate-form", async function (form) {
      var result = await api("POST", "/api/v1/me/mfa/recovery-codes", { code: form.code.value.trim() });
      form.reset();
      showRecoveryCodes(result.recovery_codes);
    });
    onSubmit("mfa-disable-form", async function (form) {
      await api("POST", "/api/v1/me/mfa/disable", { code: form.code.value.trim() });
      window.location.reload();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (document.body.dataset.page === "mfa") { init(); }
  });
})();
