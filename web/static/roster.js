// Faculty roster: manual and bulk marking, and review of flagged check-ins.
// The rows and their live updates belong to app.js (initRoster); this file only reads
// them (tr.roster-row[data-student-id]) and talks to the marking and flag APIs.
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

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

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
      loadFlags();
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

  var flagsSection, flagList;

  function flagItem(flag) {
    var li = el("li", "flag");
    li.dataset.flagId = flag.id;
    var head = el("p");
    head.appendChild(el("strong", null, flag.student_name));
    head.appendChild(document.createTextNode(" · " + flag.kind.replace("_", " ") + " · now " + (flag.status || "no record")));
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
          loadFlags();
        });
      });
      actions.appendChild(button);
    });
    li.appendChild(actions);
    return li;
  }

  function loadFlags() {
    fetch(flagsSection.dataset.url, { credentials: "same-origin" }).then(function (response) {
      return response.ok ? response.json() : null;
    }).then(function (page) {
      if (!page) { return; }
      flagList.replaceChildren.apply(flagList, page.items.map(flagItem));
      flagsSection.hidden = page.items.length === 0;
    }, function () {});
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (document.body.dataset.page !== "faculty-session") { return; }
    flagsSection = document.getElementById("flags");
    flagList = document.getElementById("flag-list");
    initMarking();
    loadFlags();
    // Flags are few and reviewed at leisure: a light poll while the page is visible.
    setInterval(function () { if (!document.hidden) { loadFlags(); } }, 5000);
  });
})();
