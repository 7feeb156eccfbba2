// The password forms (web/templates/activate.html, password.html): explain the policy as the person
// types, through POST /api/v1/password-check (debounced: one request once typing pauses), and submit
// to /api/v1/activate or /api/v1/account/password (web/routes/accounts_api.py).
(function () {
  "use strict";

  var DEBOUNCE_MS = 300;

  function byId(id) { return document.getElementById(id); }

  function init() {
    var form = byId("password-form");
    if (!form) { return; }
    // Looked up here, not at load: the templates load this file without defer, before app.js runs.
    var api = window.CampusHub.api;
    var activating = form.dataset.mode === "activate";
    var password = byId("new-password");
    var verdict = byId("password-verdict");
    var meter = byId("password-strength");
    var errorBox = byId("password-error");
    var timer = null;
    var asked = 0;

    function showError(message) {
      errorBox.textContent = message || "";
      errorBox.hidden = !message;
    }

    function show(result) {
      meter.value = result.score;
      verdict.textContent = result.ok ? "Good password." : (result.reason || "Choose another password.");
      verdict.className = result.ok ? "ok" : "error";
      verdict.dataset.ok = result.ok ? "yes" : "no";
    }

    async function check() {
      var mine = ++asked;
      var body = { password: password.value };
      if (activating) {
        var code = byId("code").value.trim();
        if (!code) { verdict.textContent = "Enter your code first."; return; }
        body.code = code;
      }
      try {
        var result = await api("POST", "/api/v1/password-check", body);
        if (mine === asked) { show(result); showError(null); }  // an older answer must not overwrite a newer one
      } catch (error) {
        if (mine === asked) { verdict.textContent = ""; showError(error.message); }
      }
    }

    password.addEventListener("input", function () {
      clearTimeout(timer);
      verdict.dataset.ok = "";
      if (!password.value) { verdict.textContent = ""; meter.value = 0; return; }
      timer = setTimeout(check, DEBOUNCE_MS);
    });

    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      showError(null);
      var button = byId("password-submit");
      button.disabled = true;
      try {
        if (activating) {
          await api("POST", "/api/v1/activate", { code: byId("code").value.trim(), password: password.value });
        } else {
          await api("POST", "/api/v1/account/password", {
            current_password: byId("current-password").value, new_password: password.value
          });
        }
        form.hidden = true;
        var forced = byId("password-forced");
        if (forced) { forced.hidden = true; }
        byId("password-done").hidden = false;
      } catch (error) {
        showError(error.message);
      } finally {
        button.disabled = false;
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
}());
