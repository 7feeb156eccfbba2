// The settings pages (<body data-page="settings-thresholds|settings-webhooks|settings-tickets">):
// alarm rules with their 24 h preview, webhooks with a test delivery, the ticket SLA policy.
// Plain ES2017, no build step; everything goes through the JSON API with the browser's cookies,
// so each page can do exactly what the API allows the caller. Feedback appears beside the control
// that was used (CampusHub.feedback), destructive actions ask first (CampusHub.confirmAction).
(function () {
  "use strict";

  var hub = window.CampusHub;  // app.js: el, feedback, confirmAction
  var el = hub.el;

  // One API call: resolves with the JSON body (null for 204), rejects with an Error carrying the
  // API's error code and field.
  var api = hub.api;  // app.js: the one JSON API call

  function when(iso) {
    if (!iso) { return "—"; }
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString([], { month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit" });
  }

  function number(value) {
    return Number(value).toLocaleString(undefined, { maximumFractionDigits: 2 });
  }

  function duration(seconds) {
    var units = [["day", 86400], ["h", 3600], ["min", 60]];
    for (var i = 0; i < units.length; i++) {
      var size = units[i][1];
      if (seconds >= size && seconds % size === 0) {
        var count = seconds / size;
        return count + " " + units[i][0] + (units[i][0] === "day" && count !== 1 ? "s" : "");
      }
    }
    return seconds + " s";
  }

  function words(code) { return String(code).replace(/_/g, " "); }

  function emptyRow(body, columns, text) {
    var row = el("tr");
    var cell = el("td", "empty-state", text);
    cell.colSpan = columns;
    row.appendChild(cell);
    body.appendChild(row);
  }

  function button(text, className) {
    var node = el("button", className, text);
    node.type = "button";
    return node;
  }

  // Where feedback about a control goes: after the last button of its row of buttons (a table
  // cell's actions), so the message never splits the buttons.
  function beside(control) {
    var parent = control.parentNode;
    if (!parent || parent.tagName !== "TD") { return control; }
    var buttons = parent.querySelectorAll("button");
    return buttons[buttons.length - 1];
  }

  function markInvalid(input, invalid) {
    if (!input) { return; }
    if (invalid) { input.setAttribute("aria-invalid", "true"); } else { input.removeAttribute("aria-invalid"); }
  }

  // --- alarm rules ---------------------------------------------------------------------------

  function thresholds() {
    var choices = JSON.parse(document.getElementById("threshold-choices").textContent);
    var roomNames = {};
    choices.rooms.forEach(function (r) { roomNames[r.id] = r.name + " (" + r.building + ")"; });
    var units = choices.units;
    var body = document.getElementById("rules-body");
    var more = document.getElementById("rules-more");
    var form = document.getElementById("rule-form");
    var heading = document.getElementById("rule-form-heading");
    var save = document.getElementById("rule-save");
    var discard = document.getElementById("rule-discard");
    var previewButton = document.getElementById("rule-preview-button");
    var input = {
      rule_id: document.getElementById("rule-id"), metric: document.getElementById("rule-metric"),
      op: document.getElementById("rule-op"), value: document.getElementById("rule-value"),
      clear_value: document.getElementById("rule-clear"), duration_s: document.getElementById("rule-duration"),
      severity: document.getElementById("rule-severity"), scope: document.getElementById("rule-scope"),
      room_type: document.getElementById("rule-room-type"), room_id: document.getElementById("rule-room"),
      enabled: document.getElementById("rule-enabled")
    };

    function unitOf(metric) { return units[metric] || ""; }
    function withUnit(value, metric) { var unit = unitOf(metric); return number(value) + (unit ? " " + unit : ""); }

    function condition(rule) {
      return rule.op + " " + withUnit(rule.value, rule.metric) +
        (rule.duration_s > 0 ? " for " + duration(rule.duration_s) : "") +
        "; clears at " + withUnit(rule.clear_value, rule.metric);
    }

    function where(rule) {
      if (rule.room_id) { return roomNames[rule.room_id] || rule.room_id; }
      if (rule.room_type) { return "Every room of type " + words(rule.room_type); }
      return "Every room";
    }

    function showUnits() {
      var unit = unitOf(input.metric.value.trim());
      document.querySelectorAll("[data-unit-for=rule-metric]").forEach(function (node) {
        node.textContent = unit ? "(" + unit + ")" : "";
      });
    }

    function showScope() {
      document.getElementById("rule-room-type-field").hidden = input.scope.value !== "room_type";
      document.getElementById("rule-room-field").hidden = input.scope.value !== "room";
    }

    function render(page) {
      body.textContent = "";
      if (!page.items.length) {
        emptyRow(body, 6, "No alarm rules yet, so no reading raises an alarm. Add one below; devices check it " +
          "from the moment it is saved.");
      }
      page.items.forEach(function (rule) {
        var row = el("tr");
        row.dataset.ruleId = rule.id;
        row.appendChild(el("td", "", rule.metric + (unitOf(rule.metric) ? " (" + unitOf(rule.metric) + ")" : "")));
        row.appendChild(el("td", "", condition(rule)));
        row.appendChild(el("td", "", where(rule)));
        var severity = el("td");
        severity.className = "nowrap";
        severity.appendChild(el("span", "sev sev-" + rule.severity, rule.severity));
        row.appendChild(severity);
        row.appendChild(el("td", "nowrap", rule.enabled ? "On" : "Off"));
        var actions = el("td", "actions");
        var edit = button("Edit", "btn-secondary inline");
        edit.setAttribute("aria-label", "Edit the rule " + rule.metric + " " + condition(rule));
        edit.addEventListener("click", function () { startEditing(rule); });
        var remove = button("Delete", "btn-danger inline");
        remove.setAttribute("aria-label", "Delete the rule " + rule.metric + " " + condition(rule));
        remove.addEventListener("click", function () { deleteRule(rule, remove); });
        actions.appendChild(edit);
        actions.appendChild(remove);
        row.appendChild(actions);
        body.appendChild(row);
      });
      more.hidden = page.total <= page.items.length;
      more.textContent = "Showing the first " + page.items.length + " of " + page.total + " rules.";
    }

    function load() {
      return api("GET", "/api/v1/thresholds?limit=500").then(render, function (error) {
        body.textContent = "";
        emptyRow(body, 6, "The rules could not be loaded: " + error.message);
      });
    }

    function startEditing(rule) {
      input.rule_id.value = rule.id;
      input.metric.value = rule.metric;
      input.op.value = rule.op;
      input.value.value = rule.value;
      input.clear_value.value = rule.clear_value;
      input.duration_s.value = rule.duration_s / 60;
      input.severity.value = rule.severity;
      input.scope.value = rule.scope;
      if (rule.room_type) { input.room_type.value = rule.room_type; }
      if (rule.room_id) { input.room_id.value = rule.room_id; }
      input.enabled.checked = rule.enabled;
      heading.textContent = "Edit the rule: " + rule.metric + " " + condition(rule);
      save.textContent = "Save changes";
      discard.hidden = false;
      showScope();
      showUnits();
      hub.feedback(save.parentNode, "");
      document.getElementById("rule-preview").hidden = true;
      form.scrollIntoView({ block: "start" });
      input.metric.focus();
    }

    function stopEditing() {
      form.reset();
      input.rule_id.value = "";
      heading.textContent = "Add a rule";
      save.textContent = "Add rule";
      discard.hidden = true;
      showScope();
      showUnits();
      Object.keys(input).forEach(function (name) { markInvalid(input[name], false); });
    }

    // The rule the form describes, as the API takes it; throws {field, message} for what the
    // browser can tell is missing (the API checks everything again).
    function candidate() {
      Object.keys(input).forEach(function (name) { markInvalid(input[name], false); });
      var metric = input.metric.value.trim();
      if (!/^[a-z][a-z0-9_]{0,31}$/.test(metric)) {
        throw { field: "metric", message: "Choose a reading, e.g. co2 (lower-case letters, digits and _)." };
      }
      ["value", "clear_value"].forEach(function (name) {
        if (input[name].value.trim() === "" || !isFinite(Number(input[name].value))) {
          throw { field: name, message: (name === "value" ? "The trip level" : "The clear level") + " must be a number." };
        }
      });
      var minutes = input.duration_s.value.trim() === "" ? 0 : Number(input.duration_s.value);
      if (!isFinite(minutes) || minutes < 0 || minutes * 60 > choices.max_duration_s) {
        throw { field: "duration_s", message: "The duration must be between 0 and " + number(choices.max_duration_s / 60) + " minutes (7 days)." };
      }
      var rule = {
        metric: metric, op: input.op.value, value: Number(input.value.value),
        clear_value: Number(input.clear_value.value), duration_s: Math.round(minutes * 60),
        severity: input.severity.value, enabled: input.enabled.checked
      };
      if (input.scope.value === "room_type") {
        if (!input.room_type.value) { throw { field: "room_type", message: "There is no room type to choose yet." }; }
        rule.room_type = input.room_type.value;
      }
      if (input.scope.value === "room") {
        if (!input.room_id.value) { throw { field: "room_id", message: "There is no room to choose yet." }; }
        rule.room_id = input.room_id.value;
      }
      return rule;
    }

    function refused(anchor, error) {
      markInvalid(input[error.field], true);
      hub.feedback(anchor, error.message, "error");
      if (input[error.field]) { input[error.field].focus(); }
    }

    function submit(event) {
      event.preventDefault();
      var rule;
      try { rule = candidate(); } catch (problem) { refused(save.parentNode, problem); return; }
      var id = input.rule_id.value;
      save.disabled = true;
      api(id ? "PUT" : "POST", id ? "/api/v1/thresholds/" + encodeURIComponent(id) : "/api/v1/thresholds", rule)
        .then(function (saved) {
          var text = (id ? "Changes saved: " : "Rule added: ") + saved.metric + " " + condition(saved) + " (" +
            where(saved) + "). Devices use it now.";
          if (!id) { stopEditing(); } else { heading.textContent = "Edit the rule: " + saved.metric + " " + condition(saved); }
          hub.feedback(save.parentNode, text, "success");
          // The reloaded table above the form grows by a row: bring the answer back into view after it.
          return load().then(function () { hub.feedback(save.parentNode, text, "success"); });
        }, function (error) { refused(save.parentNode, error); })
        .then(function () { save.disabled = false; });
    }

    function deleteRule(rule, control) {
      var text = "Delete the rule \"" + rule.metric + " " + condition(rule) + "\" (" + where(rule) +
        ")? An alarm that only this rule keeps active will clear.";
      hub.confirmAction(text, { confirmLabel: "Delete rule", cancelLabel: "Keep rule", danger: true }).then(function (yes) {
        if (!yes) { return; }
        api("DELETE", "/api/v1/thresholds/" + encodeURIComponent(rule.id)).then(function () {
          if (String(input.rule_id.value) === String(rule.id)) { stopEditing(); }
          return load().then(function () {
            hub.feedback(document.getElementById("rules-table").parentNode,
              "Rule deleted: " + rule.metric + " " + condition(rule) + ".", "success");
          });
        }, function (error) { hub.feedback(beside(control), "Not deleted: " + error.message, "error"); });
      });
    }

    function preview() {
      var rule;
      try { rule = candidate(); } catch (problem) { refused(previewButton.parentNode, problem); return; }
      if (input.rule_id.value) { rule.rule_id = Number(input.rule_id.value); }
      previewButton.disabled = true;
      hub.feedback(previewButton.parentNode, "Replaying the last 24 h of readings…", "info");
      api("POST", "/api/v1/thresholds/preview", rule).then(function (result) {
        hub.feedback(previewButton.parentNode, "");
        showPreview(result);
      }, function (error) { refused(previewButton.parentNode, error); })
        .then(function () { previewButton.disabled = false; });
    }

    function showPreview(result) {
      if (result.unit && !unitOf(result.rule.metric)) {  // a metric new to the form: its readings say the unit
        units[result.rule.metric] = result.unit;
        showUnits();
      }
      var section = document.getElementById("rule-preview");
      var summary = document.getElementById("rule-preview-summary");
      var wrap = document.getElementById("rule-preview-table-wrap");
      var rows = document.getElementById("rule-preview-body");
      var checked = number(result.readings_checked) + " readings from " + result.devices_checked + " device" +
        (result.devices_checked === 1 ? "" : "s") + " in the " + result.rooms_governed + " room" +
        (result.rooms_governed === 1 ? "" : "s") + " it would govern";
      rows.textContent = "";
      if (result.rooms_governed === 0) {
        summary.textContent = "This rule would govern no room: no room matches its scope, or a rule for a " +
          "narrower scope (a room type, or one room) of the same kind overrides it everywhere.";
      } else if (result.trips === 0) {
        summary.textContent = "It would not have fired in the last 24 h (checked " + checked + ").";
      } else {
        summary.textContent = "It would have fired " + result.trips + " time" + (result.trips === 1 ? "" : "s") +
          " in " + result.rooms.length + " room" + (result.rooms.length === 1 ? "" : "s") + " in the last 24 h (checked " +
          checked + ").";
      }
      if (result.truncated) {
        summary.textContent += " The day held more readings than one preview replays, so some devices were left out.";
      }
      result.rooms.forEach(function (room) {
        room.trips.forEach(function (trip) {
          var row = el("tr");
          row.appendChild(el("td", "", room.room_name || room.room_id));
          row.appendChild(el("td", "", trip.device_id));
          row.appendChild(el("td", "", when(trip.since)));
          row.appendChild(el("td", "", when(trip.tripped_at)));
          row.appendChild(el("td", "", trip.cleared_at ? when(trip.cleared_at) : "still past the level"));
          row.appendChild(el("td", "", number(trip.peak) + (trip.unit ? " " + trip.unit : "")));
          rows.appendChild(row);
        });
      });
      wrap.hidden = result.trips === 0;
      section.hidden = false;
      section.scrollIntoView({ block: "nearest" });
    }

    input.metric.addEventListener("input", showUnits);
    input.scope.addEventListener("change", showScope);
    form.addEventListener("submit", submit);
    previewButton.addEventListener("click", preview);
    discard.addEventListener("click", function () {
      stopEditing();
      document.getElementById("rule-preview").hidden = true;
      hub.feedback(save.parentNode, "Changes discarded; the rule is as it was.", "info");
    });
    showScope();
    showUnits();
    load();
  }

  // --- webhooks ------------------------------------------------------------------------------

  var DELIVERY_WORDS = { delivered: "Delivered", failed: "Failed (gave up)" };

  function webhooks() {
    var body = document.getElementById("webhooks-body");
    var form = document.getElementById("webhook-form");
    var register = document.getElementById("webhook-register");
    var deliveries = document.getElementById("deliveries");
    var shown = null;  // the webhook whose deliveries are shown

    function sends(hook) {
      return hook.kinds.length ? hook.kinds.map(words).join(", ") : "Every notification";
    }

    function render(page) {
      body.textContent = "";
      if (!page.items.length) {
        emptyRow(body, 5, "No webhooks yet: notifications stay inside CampusHub. Register one below to send them " +
          "to another system as well.");
      }
      page.items.forEach(function (hook) {
        var row = el("tr");
        row.dataset.webhookId = hook.id;
        var address = el("td", "settings-url");
        address.appendChild(el("code", "", hook.url));
        if (hook.description) { address.appendChild(el("div", "muted small", hook.description)); }
        row.appendChild(address);
        row.appendChild(el("td", "", sends(hook)));
        row.appendChild(el("td", "", hook.active ? "On" : "Off"));
        row.appendChild(el("td", "", hook.secret_hint));
        var actions = el("td", "actions");
        var test = button("Send test", "btn-secondary inline");
        test.disabled = !hook.active;
        test.title = hook.active ? "" : "Turn the webhook on to send a test.";
        test.addEventListener("click", function () { sendTest(hook, test); });
        var log = button("Deliveries", "btn-secondary inline");
        log.addEventListener("click", function () { showDeliveries(hook); });
        var toggle = button(hook.active ? "Turn off" : "Turn on", "btn-secondary inline");
        toggle.addEventListener("click", function () { setActive(hook, toggle); });
        var remove = button("Delete", "btn-danger inline");
        remove.addEventListener("click", function () { deleteHook(hook, remove); });
        [test, log, toggle, remove].forEach(function (node) {
          node.setAttribute("aria-label", node.textContent + ": " + hook.url);
          actions.appendChild(node);
        });
        row.appendChild(actions);
        body.appendChild(row);
      });
    }

    function load() {
      return api("GET", "/api/v1/webhooks?limit=500").then(render, function (error) {
        body.textContent = "";
        emptyRow(body, 5, "The webhooks could not be loaded: " + error.message);
      });
    }

    // After a reload, the same action's button of the same webhook (feedback goes beside it).
    function rowButton(hook, label) {
      var row = body.querySelector("tr[data-webhook-id=\"" + hook.id + "\"]");
      if (!row) { return document.getElementById("webhooks-table").parentNode; }
      var found = Array.prototype.filter.call(row.querySelectorAll("button"), function (b) {
        return b.textContent === label;
      });
      return found[0] || row.querySelector("button:last-child");
    }

    function result(delivery) {
      if (delivery.last_status !== null && delivery.last_status !== undefined) { return "HTTP " + delivery.last_status; }
      return delivery.last_error || "—";
    }

    function renderDeliveries(page) {
      var rows = document.getElementById("deliveries-body");
      rows.textContent = "";
      if (!page.items.length) {
        emptyRow(rows, 6, "Nothing has been sent to this webhook yet. Notifications of the kinds it takes appear " +
          "here, and so does a test.");
      }
      page.items.forEach(function (d) {
        var row = el("tr");
        row.dataset.deliveryId = d.id;
        row.appendChild(el("td", "", when(d.created_at)));
        row.appendChild(el("td", "", d.kind === "webhook_test" ? "test" : words(d.kind)));
        var state = DELIVERY_WORDS[d.state] || (d.attempts ? "Waiting to retry" : "Queued");
        row.appendChild(el("td", "delivery-" + d.state, state));
        row.appendChild(el("td", "", String(d.attempts)));
        row.appendChild(el("td", "", result(d)));
        row.appendChild(el("td", "", when(d.last_attempt_at)));
        rows.appendChild(row);
      });
    }

    function showDeliveries(hook) {
      shown = hook;
      document.getElementById("deliveries-url").textContent = hook.url;
      deliveries.hidden = false;
      return api("GET", "/api/v1/webhooks/" + encodeURIComponent(hook.id) + "/deliveries?limit=20")
        .then(function (page) { renderDeliveries(page); return page; });
    }

    function sendTest(hook, control) {
      control.disabled = true;
      hub.feedback(beside(control), "Test sent to the hub's dispatcher; waiting for the endpoint's answer…", "info");
      api("POST", "/api/v1/webhooks/" + encodeURIComponent(hook.id) + "/test", {}).then(function (queued) {
        var deadline = Date.now() + 30000;
        function poll() {
          return showDeliveries(hook).then(function (page) {
            var mine = page.items.filter(function (d) { return d.id === queued.id; })[0];
            if (mine && mine.attempts > 0) {
              if (mine.state === "delivered") {
                hub.feedback(beside(control), "Test delivered: the endpoint answered " + result(mine) + ".", "success");
              } else {
                hub.feedback(beside(control), "Test not delivered: " + result(mine) + "." +
                  (mine.state === "pending" ? " The hub will retry it." : ""), "error");
              }
              return;
            }
            if (Date.now() > deadline) {
              hub.feedback(beside(control), "The hub has not sent the test yet (is it running?). Its result will show " +
                "under Deliveries.", "info");
              return;
            }
            return new Promise(function (resolve) { setTimeout(resolve, 1000); }).then(poll);
          });
        }
        return poll();
      }, function (error) { hub.feedback(beside(control), "Test not sent: " + error.message, "error"); })
        .then(function () { control.disabled = !hook.active; });
    }

    function setActive(hook, control) {
      api("PATCH", "/api/v1/webhooks/" + encodeURIComponent(hook.id), { active: !hook.active }).then(function (saved) {
        return load().then(function () {
          hub.feedback(beside(rowButton(saved, saved.active ? "Turn off" : "Turn on")), saved.active
            ? "Turned on: notifications are sent to it again." : "Turned off: nothing is sent to it until it is turned on.",
          "success");
        });
      }, function (error) { hub.feedback(beside(control), "Not changed: " + error.message, "error"); });
    }

    function deleteHook(hook, control) {
      hub.confirmAction("Delete the webhook to " + hook.url + "? Nothing more is sent to it, and its delivery log " +
        "is deleted too.", { confirmLabel: "Delete webhook", cancelLabel: "Keep webhook", danger: true })
        .then(function (yes) {
          if (!yes) { return; }
          api("DELETE", "/api/v1/webhooks/" + encodeURIComponent(hook.id)).then(function () {
            if (shown && shown.id === hook.id) { deliveries.hidden = true; shown = null; }
            return load().then(function () {
              hub.feedback(document.getElementById("webhooks-table").parentNode,
                "Webhook deleted: " + hook.url + ".", "success");
            });
          }, function (error) { hub.feedback(beside(control), "Not deleted: " + error.message, "error"); });
        });
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var url = document.getElementById("webhook-url");
      markInvalid(url, false);
      if (!url.value.trim()) {
        markInvalid(url, true);
        hub.feedback(register.parentNode, "Give the address that should receive the notifications.", "error");
        url.focus();
        return;
      }
      var kinds = Array.prototype.map.call(form.querySelectorAll("input[name=kinds]:checked"), function (box) {
        return box.value;
      });
      register.disabled = true;
      api("POST", "/api/v1/webhooks", {
        url: url.value.trim(), description: document.getElementById("webhook-description").value.trim(), kinds: kinds
      }).then(function (created) {
        form.reset();
        document.getElementById("webhook-secret-value").textContent = created.secret;
        document.getElementById("webhook-secret").hidden = false;
        // After the list is redrawn, as the rules' form does: the new row above would push a message
        // shown before it out of view.
        return load().then(function () {
          hub.feedback(register.parentNode, "Webhook registered. Copy its signing secret below: it is not shown again.",
                       "success");
        });
      }, function (error) {
        if (error.field === "url") { markInvalid(url, true); url.focus(); }
        hub.feedback(register.parentNode, "Not registered: " + error.message, "error");
      }).then(function () { register.disabled = false; });
    });

    document.getElementById("webhook-secret-copy").addEventListener("click", function (event) {
      var control = event.currentTarget;
      var secret = document.getElementById("webhook-secret-value").textContent;
      if (!navigator.clipboard) {
        hub.feedback(control.parentNode, "Select the secret and copy it by hand.", "info");
        return;
      }
      navigator.clipboard.writeText(secret).then(function () {
        hub.feedback(control.parentNode, "Copied.", "success");
      }, function () { hub.feedback(control.parentNode, "Could not copy: select the secret and copy it by hand.", "error"); });
    });
    document.getElementById("deliveries-refresh").addEventListener("click", function (event) {
      var control = event.currentTarget;
      if (shown) {
        showDeliveries(shown).then(function () { hub.feedback(control.parentNode, "Up to date.", "success"); },
          function (error) { hub.feedback(control.parentNode, error.message, "error"); });
      }
    });
    document.getElementById("deliveries-close").addEventListener("click", function () {
      deliveries.hidden = true;
      shown = null;
    });
    load();
  }

  // --- ticket SLA policy ---------------------------------------------------------------------

  function ticketPolicy() {
    var form = document.getElementById("policy-form");
    var save = document.getElementById("policy-save");
    document.querySelectorAll(".policy-never").forEach(function (box) {
      box.addEventListener("change", function () {
        var close = box.closest("tr").querySelector(".policy-close");
        close.disabled = box.checked;
        if (!box.checked && close.value === "") { close.value = 30; }
      });
    });
    if (!save) { return; }  // read-only (ops)
    var minSla = Number(form.dataset.minSlaS);
    var maxSla = Number(form.dataset.maxSlaS);
    var maxClose = Number(form.dataset.maxAutoCloseS);

    function fieldError(input, message) {
      var note = document.getElementById(input.id + "-error");
      note.textContent = message || "";
      note.hidden = !message;
      markInvalid(input, !!message);
      return !message;
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var priorities = [];
      var firstBad = null;
      form.querySelectorAll("tr[data-priority]").forEach(function (row) {
        var within = row.querySelector(".policy-within");
        var unit = Number(row.querySelector(".policy-within-unit").value);
        var close = row.querySelector(".policy-close");
        var never = row.querySelector(".policy-never").checked;
        var withinS = Math.round(Number(within.value) * unit);
        var ok = fieldError(within, within.value.trim() === "" || !isFinite(withinS) || withinS < minSla || withinS > maxSla
          ? "Between " + duration(minSla) + " and " + duration(maxSla) + "." : "");
        var closeS = never ? null : Math.round(Number(close.value) * 60);
        ok = fieldError(close, !never && (close.value.trim() === "" || !isFinite(closeS) || closeS < 0 || closeS > maxClose)
          ? "Between 0 and " + number(maxClose / 60) + " min (" + duration(maxClose) + "), or tick never." : "") && ok;
        if (!ok && firstBad === null) { firstBad = row.querySelector("[aria-invalid=true]"); }
        priorities.push({ priority: row.dataset.priority, resolve_within_s: withinS, auto_close_after_s: closeS });
      });
      if (firstBad !== null) {
        hub.feedback(save.parentNode, "Not saved: correct the values marked below each field.", "error");
        firstBad.focus();
        return;
      }
      var severities = Array.prototype.map.call(form.querySelectorAll("input[name=auto_raise]:checked"), function (box) {
        return box.value;
      });
      save.disabled = true;
      api("PUT", "/api/v1/tickets/sla-policy", { priorities: priorities, auto_raise_severities: severities })
        .then(function (saved) {
          document.getElementById("policy-changed").textContent = "Last changed just now, by you.";
          hub.feedback(save.parentNode, "Policy saved: " + saved.priorities.map(function (p) {
            return p.priority + " within " + duration(p.resolve_within_s);
          }).join(", ") + ". New tickets use it from now on.", "success");
        }, function (error) { hub.feedback(save.parentNode, "Not saved: " + error.message, "error"); })
        .then(function () { save.disabled = false; });
    });
  }

  function localTimes() {
    document.querySelectorAll("time.local-time").forEach(function (node) {
      node.textContent = when(node.getAttribute("datetime"));
    });
  }

  var page = document.body.dataset.page;
  if (page === "settings-thresholds") { thresholds(); }
  if (page === "settings-webhooks") { webhooks(); }
  if (page === "settings-tickets") { ticketPolicy(); }
  localTimes();
}());
