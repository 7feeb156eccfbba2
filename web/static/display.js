// Display mode. The projector page shows the code window the HUB says is current and asks again
// when the hub says that window ends: the display's own clock is never read, only its timer.
// The phone page completes a scanned check-in by posting the pending token.
(function () {
  "use strict";

  var api = window.CampusHub.api;  // app.js: the one JSON API call

  function initDisplay() {
    var root = document.getElementById("display");
    var img = document.getElementById("display-qr");
    var closed = document.getElementById("display-closed");
    function schedule(ms) { setTimeout(refresh, Math.max(200, ms)); }
    function refresh() {
      api("GET", root.dataset.codeUrl, undefined, { loginOn401: true }).then(function (code) {
        if (!code) { schedule(2000); return; }
        if (code.live) {
          if (img.dataset.window !== String(code.window)) {
            // The QR itself is an SVG image the browser loads (not a JSON API call).
            img.src = root.dataset.svgUrl + "?window=" + encodeURIComponent(code.window);
            img.dataset.window = String(code.window);
          }
          img.hidden = false; closed.hidden = true;
        } else {
          img.hidden = true; closed.hidden = false;
        }
        schedule(code.refresh_in_ms);
      }, function () { schedule(2000); });  // refused, offline or logged out: ask again shortly
    }
    schedule(parseInt(img.dataset.refreshMs, 10) || 1000);
  }

  function initCheckin() {
    var card = document.getElementById("checkin");
    var result = document.getElementById("checkin-result");
    function show(state, text) { result.dataset.state = state; result.textContent = text; }
    api("POST", "/api/v1/checkin/display", { pending: card.dataset.pending }).then(function (body) {
      var at = new Date(body.checked_in_at);
      show("ok", "Checked in: " + body.status + " at " + at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
      if (body.flagged) { result.textContent += " (sent to your teacher for review)"; }
    }, function (error) {
      if (!error.status) { show("error", "No connection: reload this page to try again."); return; }
      show("error", error.message);
      result.dataset.code = error.code || "";
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var page = document.body.dataset.page;
    if (page === "display") { initDisplay(); }
    else if (page === "checkin") { initCheckin(); }
  });
})();
