// CampusHub early warning: the admin's model actions (train now, pin a version, stop pinning).
// Single-threaded page script; each action answers with CampusHub.feedback next to its button.
(function () {
  "use strict";

  function post(url) {
    return fetch(url, { method: "POST", credentials: "same-origin",
                        headers: { "Content-Type": "application/json", "Accept": "application/json" }, body: "{}" })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (data) { return { ok: r.ok, status: r.status, data: data }; });
      });
  }

  function message(result) {
    return (result.data && result.data.error && result.data.error.message) || ("Request failed (" + result.status + ")");
  }

  function init() {
    var train = document.getElementById("train-now");
    if (!train) { return; }
    var feedback = window.CampusHub.feedback;
    train.addEventListener("click", function () {
      train.disabled = true;
      post("/api/v1/risk/models/train").then(function (result) {
        train.disabled = false;
        feedback(train, result.ok ? "Training started. The new version appears here when it finishes; reload in a minute."
                                   : message(result), result.ok ? "success" : "error");
      });
    });
    document.querySelectorAll(".pin-model").forEach(function (button) {
      button.addEventListener("click", function () {
        window.CampusHub.confirmAction("Use version " + button.dataset.version + " until you stop pinning it?",
                                       { confirmLabel: "Use this version", danger: false }).then(function (yes) {
          if (!yes) { return; }
          post("/api/v1/risk/models/" + button.dataset.model + "/pin").then(function (result) {
            feedback(button, result.ok ? "Version " + button.dataset.version + " is now in use." : message(result),
                     result.ok ? "success" : "error");
            if (result.ok) { window.setTimeout(function () { window.location.reload(); }, 1200); }
          });
        });
      });
    });
    document.querySelectorAll(".unpin-model").forEach(function (button) {
      button.addEventListener("click", function () {
        post("/api/v1/risk/models/unpin").then(function (result) {
          feedback(button, result.ok ? "Pinning stopped: the newest shipped version is in use." : message(result),
                   result.ok ? "success" : "error");
          if (result.ok) { window.setTimeout(function () { window.location.reload(); }, 1200); }
        });
      });
    });
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
}());
