// CampusHub early warning: the admin's model actions (train now, pin a version, stop pinning).
// Single-threaded page script; each action answers with CampusHub.feedback next to its button.
(function () {
  "use strict";

  function init() {
    var train = document.getElementById("train-now");
    if (!train) { return; }
    var api = window.CampusHub.api;  // app.js: the one JSON API call
    var feedback = window.CampusHub.feedback;
    function refused(button) {
      return function (e) { feedback(button, CampusHub.apiProblem(e), "error"); };
    }
    function reloadSoon() { window.setTimeout(function () { window.location.reload(); }, 1200); }
    train.addEventListener("click", function () {
      train.disabled = true;
      api("POST", "/api/v1/risk/models/train", {}).then(function () {
        feedback(train, "Training started. The new version appears here when it finishes; reload in a minute.", "success");
      }, refused(train)).then(function () { train.disabled = false; });
    });
    document.querySelectorAll(".pin-model").forEach(function (button) {
      button.addEventListener("click", function () {
        window.CampusHub.confirmAction("Use version " + button.dataset.version + " until you stop pinning it?",
                                       { confirmLabel: "Use this version", danger: false }).then(function (yes) {
          if (!yes) { return; }
          api("POST", "/api/v1/risk/models/" + button.dataset.model + "/pin", {}).then(function () {
            feedback(button, "Version " + button.dataset.version + " is now in use.", "success");
            reloadSoon();
          }, refused(button));
        });
      });
    });
    document.querySelectorAll(".unpin-model").forEach(function (button) {
      button.addEventListener("click", function () {
        api("POST", "/api/v1/risk/models/unpin", {}).then(function () {
          feedback(button, "Pinning stopped: the newest shipped version is in use.", "success");
          reloadSoon();
        }, refused(button));
      });
    });
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
}());
