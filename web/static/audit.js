// The audit log page (<body data-page="audit">): search, page through, export, verify the chain.
// Plain ES2017, no build step; everything goes through /api/v1/audit (CampusHub.api); the exports are
// plain links, downloaded by the browser.
(function () {
  "use strict";

  var el = window.CampusHub.el;  // app.js's element helper
  var api = window.CampusHub.api;  // app.js: the one JSON API call
  var FILTERS = ["student_id", "course_id", "session_id", "actor", "entity", "action"];

  function show(node, message) {
    node.textContent = message || "";
    node.hidden = !message;
  }

  // A date input's day as an instant at local midnight, with the browser's UTC offset
  // (the API wants ISO 8601 with an offset). plusDays moves an inclusive "to" day to the next midnight.
  function localMidnight(day, plusDays) {
    var parts = day.split("-").map(Number);
    var d = new Date(parts[0], parts[1] - 1, parts[2] + (plusDays || 0));
    var offset = -d.getTimezoneOffset();
    var sign = offset >= 0 ? "+" : "-";
    var abs = Math.abs(offset);
    function pad(n) { return (n < 10 ? "0" : "") + n; }
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T00:00:00" +
      sign + pad(Math.floor(abs / 60)) + ":" + pad(abs % 60);
  }

  function when(iso) {
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString([], { year: "numeric", month: "short", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function describe(value) {
    if (value === null || value === undefined) { return el("span", "value none", "no record"); }
    if (typeof value !== "object") { return el("span", "value", String(value)); }
    if (value.status) {
      var text = value.status;
      if (value.source) { text += " · " + value.source; }
      if (value.checked_in_at) { text += " · " + when(value.checked_in_at); }
      return el("span", "value value-" + value.status, text);
    }
    // A security entry's state: its fields, one "name: value" each (secrets were never stored).
    return el("span", "value", Object.keys(value).map(function (k) {
      var v = value[k];
      return k + ": " + (v !== null && typeof v === "object" ? JSON.stringify(v) : String(v));
    }).join(" · "));
  }

  function audit() {
    var form = document.getElementById("audit-form");
    var list = document.getElementById("audit-results");
    var error = document.getElementById("audit-error");
    var total = document.getElementById("audit-total");
    var range = document.getElementById("audit-range");
    var prev = document.getElementById("audit-prev");
    var next = document.getElementById("audit-next");
    var pageSize = Number(list.dataset.pageSize) || 50;
    var names = {};
    Array.prototype.forEach.call(document.querySelectorAll("#audit-student option[value]:not([value=''])"), function (o) {
      names[o.value] = o.textContent;
    });
    var state = { filters: "", offset: 0 };

    function filters() {
      var params = new URLSearchParams();
      FILTERS.forEach(function (name) {
        if (!form.elements[name]) { return; }  // entity/action: on an admin's form only
        var value = form.elements[name].value.trim();
        if (value) { params.set(name, value); }
      });
      if (form.elements.since.value) { params.set("since", localMidnight(form.elements.since.value, 0)); }
      if (form.elements.until.value) { params.set("until", localMidnight(form.elements.until.value, 1)); }
      return params;
    }

    function setExports(params) {
      ["csv", "jsonl"].forEach(function (format) {
        var p = new URLSearchParams(params);
        p.set("format", format);
        document.getElementById("audit-export-" + format).href = "/api/v1/audit/export?" + p.toString();
      });
    }

    function render(e) {
      var li = el("li", "record-item audit-entry");
      li.dataset.entryId = e.id;
      var head = el("div", "head");
      head.appendChild(el("strong", "", when(e.at)));
      head.appendChild(el("span", "", "by " + e.actor));
      var subject = e.student_id ? (names[e.student_id] || e.student_id) : e.entity_id;
      head.appendChild(el("span", "muted", e.entity + (e.action ? " " + e.action : "") + ": " + subject));
      li.appendChild(head);
      var change = el("div", "change");
      change.appendChild(describe(e.before));
      change.appendChild(el("span", "arrow", "→"));
      change.appendChild(describe(e.after));
      li.appendChild(change);
      li.appendChild(el("p", "why", e.reason ? "Why: " + e.reason : "No reason given."));
      var meta = el("div", "meta muted");
      meta.appendChild(el("span", "", "#" + e.id));
      if (e.session_id) { meta.appendChild(el("span", "", "session " + e.session_id)); }
      var hash = el("code", "hash", e.hash ? e.hash.slice(0, 12) + "…" : "no hash");
      if (e.hash) { hash.title = e.hash; }
      meta.appendChild(hash);
      li.appendChild(meta);
      return li;
    }

    function load() {
      show(error, "");
      var params = new URLSearchParams(state.filters);
      params.set("limit", pageSize);
      params.set("offset", state.offset);
      return api("GET", "/api/v1/audit?" + params.toString()).then(function (page) {
        total.textContent = page.total;
        list.textContent = "";
        if (!page.items.length) { list.appendChild(el("li", "muted", list.dataset.empty)); }
        page.items.forEach(function (e) { list.appendChild(render(e)); });
        range.textContent = page.items.length
          ? (page.offset + 1) + "–" + (page.offset + page.items.length) + " of " + page.total : "";
        prev.disabled = page.offset === 0;
        next.disabled = page.offset + page.items.length >= page.total;
      }, function (e) { show(error, e.message); });
    }

    function search() {
      var params = filters();
      state = { filters: params.toString(), offset: 0 };
      setExports(params);
      // The URL keeps the search, so a reload or a shared link shows the same results.
      history.replaceState(null, "", "/audit" + (state.filters ? "?" + state.filters : ""));
      return load();
    }

    form.addEventListener("submit", function (ev) { ev.preventDefault(); search(); });
    form.addEventListener("reset", function () { setTimeout(search, 0); });
    prev.addEventListener("click", function () { state.offset = Math.max(0, state.offset - pageSize); load(); });
    next.addEventListener("click", function () { state.offset += pageSize; load(); });

    // Restore a search from the URL (dates come back as the days they were chosen from).
    var initial = new URLSearchParams(location.search);
    FILTERS.forEach(function (name) {
      if (initial.get(name) && form.elements[name]) { form.elements[name].value = initial.get(name); }
    });
    if (initial.get("since")) { form.elements.since.value = initial.get("since").slice(0, 10); }
    if (initial.get("until")) {
      var last = new Date(initial.get("until"));
      if (!isNaN(last)) {
        last.setDate(last.getDate() - 1);
        form.elements.until.value = last.getFullYear() + "-" + String(last.getMonth() + 1).padStart(2, "0") +
          "-" + String(last.getDate()).padStart(2, "0");
      }
    }
    search();

    var verify = document.getElementById("audit-verify");
    if (verify) {
      var result = document.getElementById("audit-verify-result");
      verify.addEventListener("click", function () {
        verify.disabled = true;
        result.hidden = false;
        result.className = "verify-result";
        result.textContent = "Checking…";
        api("GET", "/api/v1/audit/verify").then(function (r) {
          result.textContent = "";
          result.className = "verify-result " + (r.ok ? "ok" : "broken");
          result.dataset.ok = r.ok ? "true" : "false";
          if (r.ok) {
            result.appendChild(el("strong", "", "Intact."));
            // Redacted: personal data erased, the entry verified by its links and chain fields.
            var extra = (r.redacted ? " " + r.redacted + " redacted (personal data erased)." : "") +
              (r.archived_segments ? " Continues " + r.archived_entries + " archived entries in " +
                r.archived_segments + " segment(s)." : "");
            result.appendChild(document.createTextNode(" " + r.entries + " entries verified." + extra + " Head: #" +
              (r.head_id === null ? "—" : r.head_id) + " "));
            result.appendChild(el("code", "head-hash", r.head_hash || "(empty log)"));
          } else {
            var why = {
              altered: "its content no longer matches its hash (it was edited)",
              broken_link: "it does not link to the entry before it (an earlier entry was deleted or rewritten)",
              missing_hash: "it has no hash (it was inserted bypassing the chain)"
            }[r.problem] || r.problem;
            result.appendChild(el("strong", "", "Broken at entry #" + r.first_broken_id + ":"));
            result.appendChild(document.createTextNode(" " + why + ". " + r.entries + " entries checked."));
          }
        }, function (e) {
          result.className = "verify-result broken";
          result.textContent = e.message;
        }).then(function () { verify.disabled = false; });
      });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (document.body.dataset.page === "audit") { audit(); }
  });
})();
