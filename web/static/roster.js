// Faculty roster: manual and bulk marking, and review of flagged check-ins.
// The rows and their live updates belong to app.js (initRoster); this file only reads
// them (tr.roster-row[data-student-id]) and talks to the marking and flag APIs. The flags
// panel follows the roster's websocket: open flags in each snapshot, then "flag" messages.
(function () {
  "use strict";

  var el = window.CampusHub.el;  // app.js's element helper
  var api = window.CampusHub.api;  // app.js: the one JSON API call

  // What a refused call says: the API's own sentence, or that the hub could not be reached.
  var problem = window.CampusHub.apiProblem;  // app.js: the API's sentence, or "No connection."

  // Selection is the rows' checkboxes (keyboard and screen readers); tapping anywhere on a row
  // toggles its box too. tr.selected mirrors the box for the highlight.
  function initMarking() {
    var table = document.getElementById("roster");
    var panel = document.getElementById("mark-panel");
    var reason = document.getElementById("mark-reason");
    var message = document.getElementById("mark-message");
    var selectedCount = document.getElementById("mark-selected-count");
    function say(text) { message.textContent = text; }
    function selectedRows() { return table.querySelectorAll("tr.roster-row.selected"); }
    function sync(tr) {
      var box = tr.querySelector("input.row-select");
      tr.classList.toggle("selected", !!(box && box.checked));
      selectedCount.textContent = selectedRows().length;
    }
    function after(answer) {
      say(answer.changed.length + " record(s) changed.");
      selectedRows().forEach(function (tr) {
        var box = tr.querySelector("input.row-select");
        if (box) { box.checked = false; }
        sync(tr);
      });
    }
    function refused(error) { say(problem(error)); }
    table.addEventListener("click", function (event) {
      var tr = event.target.closest("tr.roster-row");
      if (!tr) { return; }
      var box = tr.querySelector("input.row-select");
      if (box && event.target !== box) { box.checked = !box.checked; }
      sync(tr);
    });
    panel.querySelectorAll("button[data-mark]").forEach(function (button) {
      button.addEventListener("click", function () {
        var marks = [];
        selectedRows().forEach(function (tr) {
          marks.push({ student_id: tr.dataset.studentId, status: button.dataset.mark });
        });
        if (!marks.length) { say("Select students first (tick or tap their rows)."); return; }
        api("POST", panel.dataset.url, { marks: marks, reason: reason.value }).then(after, refused);
      });
    });
    document.getElementById("mark-unmarked").addEventListener("click", function (event) {
      var status = event.target.dataset.status;
      window.CampusHub.confirmAction("Mark every student who has not checked in yet as " + status + "?",
        { confirmLabel: "Mark them " + status, cancelLabel: "Keep as they are" }).then(function (yes) {
        if (!yes) { return; }
        api("POST", panel.dataset.url + "/unmarked", { status: status, reason: reason.value }).then(after, refused);
      });
    });
    // A live snapshot rebuilds the rows: the count follows what is selected now.
    new MutationObserver(function () { selectedCount.textContent = selectedRows().length; })
      .observe(table, { childList: true, subtree: true });
  }

  // --- roster search: narrows the rows by name or roll number, live rows included ----------

  function fold(text) {
    return (text || "").normalize("NFD").replace(/[\u0300-\u036f]/g, "").toLowerCase().trim();
  }

  function initSearch() {
    var input = document.getElementById("roster-search");
    var table = document.getElementById("roster");
    var count = document.getElementById("roster-search-count");
    if (!input) { return; }
    var applying = false;
    function apply() {
      if (applying) { return; }
      applying = true;
      var query = fold(input.value), shown = 0, total = 0;
      table.querySelectorAll("tr.roster-row").forEach(function (tr) {
        total += 1;
        var text = fold((tr.querySelector(".name") || {}).textContent + " " + (tr.querySelector(".roll") || {}).textContent);
        var match = !query || text.indexOf(query) !== -1;
        if (tr.hidden === match) { tr.hidden = !match; }
        if (match) { shown += 1; }
      });
      count.textContent = query ? shown + " of " + total + " students match" : "";
      applying = false;
    }
    input.addEventListener("input", apply);
    // Rows replaced by a live snapshot or roster change keep the filter.
    new MutationObserver(function (records) {
      if (records.some(function (r) { return r.type === "childList"; })) { apply(); }
    }).observe(table, { childList: true, subtree: true });
  }

  // --- flags: live from the roster's websocket (app.js re-dispatches each message) ---------

  var flagsSection, flagList, flagLabels = {}, flagWords = {}, flagDetailShown = [];
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
    // What the flag means in words (web/wording.py flag_words): its detail only where that is plain.
    var words = flagWords[flag.kind];
    li.appendChild(el("p", "muted", !words ? flag.detail
      : flag.detail && flagDetailShown.indexOf(flag.kind) >= 0 ? words.replace(/\.$/, "") + ": " + flag.detail + "." : words));
    var actions = el("div", "flag-actions");
    [["accept", "Keep check-in"], ["reject", "Mark absent"]].forEach(function (pair) {
      var button = el("button", pair[0] === "reject" ? "button-secondary" : null, pair[1]);
      button.type = "button";
      button.dataset.decision = pair[0];
      button.addEventListener("click", function () {
        var message = document.getElementById("mark-message");
        api("POST", "/api/v1/flags/" + flag.id + "/review", { decision: pair[0] }).then(function (reviewed) {
          message.textContent = "Flag " + (pair[0] === "accept" ? "accepted" : "rejected") + ".";
          showFlag(reviewed);  // the bus says so too; this is just sooner
        }, function (error) { message.textContent = problem(error); });
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

  // --- topics covered and understanding levels (web/routes/syllabus_api.py) --------------------------
  // One tap on a topic tags (or untags) it: the whole set is sent each time. Levels: "everyone here"
  // fills the present and late students, a student's own select is the exception, "Save" sends them.
  // Other open rosters follow the "topics" and "understanding" messages of the same websocket.

  var topicsPanel, tagging = null, pendingLevels = {};

  function say(text, kind) { window.CampusHub.feedback(document.getElementById("topics-hint"), text, kind); }

  function chip(topic, why) {
    var li = el("li");
    var b = el("button", "topic-chip", topic.position + ". " + topic.title + (why === "continue" ? " (continue)" : ""));
    b.type = "button";
    b.dataset.topicId = topic.id;
    b.setAttribute("aria-pressed", String(tagging.tagged.indexOf(topic.id) >= 0));
    b.addEventListener("click", function () { toggleTopic(topic.id); });
    li.appendChild(b);
    return li;
  }

  function renderTopics() {
    var suggested = document.getElementById("topic-suggested"), all = document.getElementById("topic-all");
    if (!tagging.topics.length) {
      document.getElementById("topics-hint").textContent = "This course has no syllabus yet: add its topics on the Syllabus page to tag what a class covered.";
      suggested.replaceChildren();
      all.replaceChildren();
      document.getElementById("topic-all-box").hidden = true;
      document.getElementById("understanding-panel").hidden = true;
      return;
    }
    var byId = {};
    tagging.topics.forEach(function (t) { byId[t.id] = t; });
    // Tagged topics first (so untagging is one tap too), then the suggestions.
    var first = tagging.tagged.map(function (id) { return [byId[id], "tagged"]; });
    tagging.suggestions.forEach(function (s) {
      if (tagging.tagged.indexOf(s.topic_id) < 0 && byId[s.topic_id]) { first.push([byId[s.topic_id], s.why]); }
    });
    suggested.replaceChildren.apply(suggested, first.map(function (p) { return chip(p[0], p[1]); }));
    all.replaceChildren.apply(all, tagging.topics.map(function (t) { return chip(t, null); }));
    document.getElementById("topic-all-box").hidden = false;
    document.getElementById("understanding-panel").hidden = false;
    var scope = document.getElementById("understanding-topic"), keep = scope.value;
    var options = [el("option", null, "The whole session")];
    options[0].value = "";
    tagging.tagged.forEach(function (id) {
      var o = el("option", null, byId[id].title);
      o.value = id;
      options.push(o);
    });
    scope.replaceChildren.apply(scope, options);
    scope.value = tagging.tagged.indexOf(Number(keep)) >= 0 ? keep : "";
    renderLevels();
  }

  function recordedLevel(studentId) {
    var topic = document.getElementById("understanding-topic").value;
    var found = tagging.levels.filter(function (l) {
      return l.student_id === studentId && String(l.topic_id === null ? "" : l.topic_id) === topic;
    })[0];
    return found ? found.level : null;
  }

  function renderLevels() {
    var tbody = document.querySelector("#understanding-table tbody");
    var rows = [];
    document.querySelectorAll("#roster tr.roster-row").forEach(function (r) {
      var id = r.dataset.studentId, name = (r.querySelector(".name") || {}).textContent || id;
      var status = (r.querySelector("td.status") || { dataset: {} }).dataset.status;
      var tr = el("tr");
      // Not data-student-id: that names the roster's own row (tr.roster-row), one per student on the page.
      tr.dataset.levelStudent = id;
      tr.appendChild(el("td", "name", name + (status === "present" || status === "late" ? "" : " (not here)")));
      var td = el("td", "understanding");
      var select = el("select");
      select.setAttribute("aria-label", "Understanding of " + name);
      ["", "1", "2", "3", "4", "5"].forEach(function (v) {
        var o = el("option", null, v || "—");
        o.value = v;
        select.appendChild(o);
      });
      var level = pendingLevels[id] !== undefined ? pendingLevels[id] : recordedLevel(id);
      select.value = level ? String(level) : "";
      select.addEventListener("change", function () { pendingLevels[id] = select.value ? Number(select.value) : null; });
      td.appendChild(select);
      tr.appendChild(td);
      rows.push(tr);
    });
    tbody.replaceChildren.apply(tbody, rows);
  }

  function loadTagging() {
    return api("GET", topicsPanel.dataset.url).then(function (body) { if (body) { tagging = body; renderTopics(); } },
      function () { /* the panel keeps what it shows; the next snapshot asks again */ });
  }

  function toggleTopic(id) {
    var set = tagging.tagged.slice(), at = set.indexOf(id);
    if (at >= 0) { set.splice(at, 1); } else { set.push(id); }
    api("PUT", topicsPanel.dataset.url, { topic_ids: set }).then(function (answer) {
      tagging = answer;
      renderTopics();
      say(tagging.tagged.length ? "Covered: " + tagging.tagged.length + " topic(s)." : "No topics tagged.", "success");
    }, function (error) { say(problem(error), "error"); });
  }

  function setEveryone(level) {
    document.querySelectorAll("#roster tr.roster-row").forEach(function (r) {
      var status = (r.querySelector("td.status") || { dataset: {} }).dataset.status;
      if (status === "present" || status === "late") { pendingLevels[r.dataset.studentId] = level; }
    });
    renderLevels();
  }

  function saveLevels() {
    var button = document.getElementById("understanding-save");
    var levels = Object.keys(pendingLevels).filter(function (id) { return pendingLevels[id]; })
      .map(function (id) { return { student_id: id, level: pendingLevels[id] }; });
    if (!levels.length) {
      window.CampusHub.feedback(button, "Pick a level first: for everyone here, or for one student.", "error");
      return;
    }
    var topic = document.getElementById("understanding-topic").value;
    api("POST", topicsPanel.dataset.understandingUrl, { levels: levels, topic_id: topic ? Number(topic) : null }).then(function (answer) {
      pendingLevels = {};
      loadTagging().then(function () {
        window.CampusHub.feedback(button, "Saved " + answer.recorded + " level(s).", "success");
      });
    }, function (error) { window.CampusHub.feedback(button, problem(error), "error"); });
  }

  function onSyllabusMessage(message) {
    if (!tagging) { return; }
    if (message.type === "snapshot") {
      loadTagging();
    } else if (message.type === "topics" && message.session_id === tagging.session_id) {
      tagging.tagged = message.topic_ids.slice();
      renderTopics();
    } else if (message.type === "understanding" && message.session_id === tagging.session_id) {
      message.levels.forEach(function (pair) {
        tagging.levels = tagging.levels.filter(function (l) { return !(l.student_id === pair[0] && l.topic_id === message.topic_id); });
        tagging.levels.push({ student_id: pair[0], topic_id: message.topic_id, level: pair[1] });
      });
      renderLevels();
    }
  }

  function initTopics() {
    topicsPanel = document.getElementById("topics-panel");
    if (!topicsPanel) { return; }
    document.getElementById("understanding-topic").addEventListener("change", function () { pendingLevels = {}; renderLevels(); });
    document.querySelectorAll("[data-level-all]").forEach(function (b) {
      b.addEventListener("click", function () { setEveryone(Number(b.dataset.levelAll)); });
    });
    document.getElementById("understanding-save").addEventListener("click", saveLevels);
    // Rows replaced by a live snapshot (or a check-in changing who is here) rebuild the level list.
    new MutationObserver(function () { if (tagging) { renderLevels(); } })
      .observe(document.querySelector("#roster"), { childList: true, subtree: true, attributes: true, attributeFilter: ["data-status"] });
    document.addEventListener("roster-message", function (event) { onSyllabusMessage(event.detail); });
    loadTagging();
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (document.body.dataset.page !== "faculty-session") { return; }
    flagsSection = document.getElementById("flags");
    flagList = document.getElementById("flag-list");
    flagLabels = JSON.parse(flagsSection.dataset.labels || "{}");
    flagWords = JSON.parse(flagsSection.dataset.words || "{}");
    flagDetailShown = JSON.parse(flagsSection.dataset.detailShown || "[]");
    initMarking();
    initSearch();
    initTopics();
    document.addEventListener("roster-message", function (event) { onMessage(event.detail); });
  });
})();
