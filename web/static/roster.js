// Faculty roster: manual and bulk marking, and review of flagged check-ins.
// The rows and their live updates belong to app.js (initRoster); this file only reads
// them (tr.roster-row[data-student-id]) and talks to the marking and flag APIs. The flags
// panel follows the roster's websocket: open flags in each snapshot, then "flag" messages.
(function () {
  "use strict";

  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (data) { return { ok: response.ok, data: data }; });
    });
  }

  var el = window.CampusHub.el;  // app.js's element helper

  function initMarking() {
    var table = document.getElementById("roster");
    var panel = document.getElementById("mark-panel");
    var reason = document.getElementById("mark-reason");
    var message = document.getElementById("mark-message");
    function say(text) { message.textContent = text; }
    function after(result) {
      if (result.ok) {
        say(result.data.changed.length + " record(s) changed.");
        table.querySelectorAll("tr.selected").forEach(function (tr) { tr.classList.remove("selected"); });
      } else {
        say((result.data.error && result.data.error.message) || "Marking failed.");
      }
    }
    table.addEventListener("click", function (event) {
      var tr = event.target.closest("tr.roster-row");
      if (tr) { tr.classList.toggle("selected"); }
    });
    panel.querySelectorAll("button[data-mark]").forEach(function (button) {
      button.addEventListener("click", function () {
        var marks = [];
        table.querySelectorAll("tr.roster-row.selected").forEach(function (tr) {
          marks.push({ student_id: tr.dataset.studentId, status: button.dataset.mark });
        });
        if (!marks.length) { say("Select students first (tap their rows)."); return; }
        post(panel.dataset.url, { marks: marks, reason: reason.value }).then(after, function () { say("No connection."); });
      });
    });
    document.getElementById("mark-unmarked").addEventListener("click", function (event) {
      post(panel.dataset.url + "/unmarked", { status: event.target.dataset.status, reason: reason.value })
        .then(after, function () { say("No connection."); });
    });
  }

  // --- flags: live from the roster's websocket (app.js re-dispatches each message) ---------

  var flagsSection, flagList, flagLabels = {};
  var STATUS_TEXT = { present: "present", late: "late", absent: "absent", excused: "excused" };

  function statusText(status) { return "now " + (STATUS_TEXT[status] || "no record"); }

  function flagItem(flag) {
    var li = el("li", "flag");
    li.dataset.flagId = flag.id;
    li.dataset.studentId = flag.student_id;
    var head = el("p");
    head.appendChild(el("strong", null, flag.student_name));
    // Plain words for people (FLAG_LABELS, from the page); the code stays in the API.
    head.appendChild(document.createTextNode(" · " + (flagLabels[flag.kind] || flag.kind.replace(/_/g, " ")) + " · "));
    head.appendChild(el("span", "flag-status", statusText(flag.status)));
    li.appendChild(head);
    li.appendChild(el("p", "muted", flag.detail));
    var actions = el("div", "flag-actions");
    [["accept", "Keep check-in"], ["reject", "Mark absent"]].forEach(function (pair) {
      var button = el("button", pair[0] === "reject" ? "button-secondary" : null, pair[1]);
      button.type = "button";
      button.dataset.decision = pair[0];
      button.addEventListener("click", function () {
        post("/api/v1/flags/" + flag.id + "/review", { decision: pair[0] }).then(function (result) {
          document.getElementById("mark-message").textContent = result.ok
            ? "Flag " + (pair[0] === "accept" ? "accepted" : "rejected") + "."
            : ((result.data.error && result.data.error.message) || "Review failed.");
          if (result.ok) { showFlag(result.data); }  // the bus says so too; this is just sooner
        }, function () { document.getElementById("mark-message").textContent = "No connection."; });
      });
      actions.appendChild(button);
    });
    li.appendChild(actions);
    return li;
  }

  function refreshVisibility() { flagsSection.hidden = flagList.children.length === 0; }

  // Newest first, like the API; a reviewed flag leaves the panel (on every open roster).
  function showFlag(flag) {
    var old = flagList.querySelector("li[data-flag-id=\"" + CSS.escape(String(flag.id)) + "\"]");
    if (flag.state !== "open") {
      if (old) { old.remove(); }
    } else if (old) {
      old.replaceWith(flagItem(flag));
    } else {
      flagList.insertBefore(flagItem(flag), flagList.firstChild);
    }
    refreshVisibility();
  }

  function onMessage(message) {
    if (message.type === "snapshot") {
      flagList.replaceChildren.apply(flagList, (message.flags || []).map(flagItem));
      refreshVisibility();
    } else if (message.type === "flag" && message.flag) {
      showFlag(message.flag);
    } else if (message.type === "attendance") {
      flagList.querySelectorAll("li[data-student-id=\"" + CSS.escape(String(message.student_id)) + "\"] .flag-status")
        .forEach(function (span) { span.textContent = statusText(message.status); });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (document.body.dataset.page !== "faculty-session") { return; }
    flagsSection = document.getElementById("flags");
    flagList = document.getElementById("flag-list");
    flagLabels = JSON.parse(flagsSection.dataset.labels || "{}");
    initMarking();
    document.addEventListener("roster-message", function (event) { onMessage(event.detail); });
  });
})();
