// Display mode. The projector page shows the code window the HUB says is current and asks again
// when the hub says that window ends: the display's own clock is never read, only its timer.
// The phone page completes a scanned check-in by posting the pending token.
(function () {
  "use strict";

  function initDisplay() {
    var root = document.getElementById("display");
    var img = document.getElementById("display-qr");
    var closed = document.getElementById("display-closed");
    function schedule(ms) { setTimeout(refresh, Math.max(200, ms)); }
    function refresh() {
      fetch(root.dataset.codeUrl, { credentials: "same-origin" }).then(function (response) {
        if (response.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); return null; }
        return response.ok ? response.json() : null;
      }).then(function (code) {
        if (!code) { schedule(2000); return; }
        if (code.live) {
          if (img.dataset.window !== String(code.window)) {
            img.src = root.dataset.svgUrl + "?window=" + encodeURIComponent(code.window);
            img.dataset.window = String(code.window);
          }
          img.hidden = false; closed.hidden = true;
        } else {
          img.hidden = true; closed.hidden = false;
        }
        schedule(code.refresh_in_ms);
      }, function () { schedule(2000); });
    }
    schedule(parseInt(img.dataset.refreshMs, 10) || 1000);
  }

  function initCheckin() {
    var card = document.getElementById("checkin");
    var result = document.getElementById("checkin-result");
    function show(state, text) { result.dataset.state = state; result.textContent = text; }
    fetch("/api/v1/checkin/display", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ pending: card.dataset.pending })
    }).then(function (response) {
      return response.json().then(function (body) { return { ok: response.ok, body: body }; });
    }).then(function (r) {
      if (r.ok) {
        var at = new Date(r.body.checked_in_at);
        show("ok", "Checked in: " + r.body.status + " at " + at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
        if (r.body.flagged) { result.textContent += " (sent to your teacher for review)"; }
      } else {
        show("error", (r.body.error && r.body.error.message) || "Check-in failed.");
        result.dataset.code = (r.body.error && r.body.error.code) || "";
      }
    }, function () { show("error", "No connection: reload this page to try again."); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var page = document.body.dataset.page;
    if (page === "display") { initDisplay(); }
    else if (page === "checkin") { initCheckin(); }
  });
})();
