// Device registration page: POST /api/v1/devices, then show the one-time credentials.
// Plain ES2017, no build step; loaded only by web/templates/provisioning.html.
(function () {
  "use strict";

  function byId(id) { return document.getElementById(id); }

  function showError(message) {
    var box = byId("register-error");
    box.textContent = message;
    box.hidden = !message;
  }

  function show(result) {
    var c = result.credentials;
    byId("cred-device").textContent = result.device.device_id;
    byId("cred-alg").textContent = c.alg;
    byId("cred-key").textContent = c.signing_key;
    byId("cred-user").textContent = c.mqtt_username;
    byId("cred-password").textContent = c.mqtt_password;
    var hasHubKey = !!c.hub_public_key;
    byId("cred-hub").textContent = c.hub_public_key || "";
    byId("cred-hub-label").hidden = !hasHubKey;
    byId("cred-hub-row").hidden = !hasHubKey;
    byId("cred-toml").textContent = result.edge_agent_toml;
    byId("credentials").hidden = false;
    byId("credentials").scrollIntoView({ behavior: "smooth", block: "start" });
  }

  async function register(event) {
    event.preventDefault();
    var form = event.target;
    var submit = byId("register-submit");
    showError("");
    var body = {
      device_id: form.device_id.value.trim(),
      room_id: form.room_id.value,
      kind: form.kind.value,
      model: form.model.value.trim(),
      alg: form.alg.value
    };
    submit.disabled = true;
    try {
      show(await window.CampusHub.api("POST", "/api/v1/devices", body, { loginOn401: true }));
      form.reset();
    } catch (err) {
      if (err.status === 401) { return; }  // on the way to the login page
      showError(err.status ? err.message : "Could not reach the hub: " + err.message);
    } finally {
      submit.disabled = false;
    }
  }

  async function copy(event) {
    var target = byId(event.target.dataset.copy);
    if (!target) { return; }
    var text = target.textContent;
    try {
      await navigator.clipboard.writeText(text);
    } catch (err) {
      // No clipboard permission (plain http): select the text so the user can copy it.
      var range = document.createRange();
      range.selectNodeContents(target);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }
    var note = byId("copied");
    note.hidden = false;
    setTimeout(function () { note.hidden = true; }, 1500);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = byId("register-device");
    if (!form) { return; }
    form.addEventListener("submit", register);
    document.querySelectorAll("button.copy").forEach(function (button) { button.addEventListener("click", copy); });
  });
}());
