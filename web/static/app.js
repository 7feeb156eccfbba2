// CampusHub pages: live updates over websockets. Plain ES2017, no build step.
// Every page declares itself with <body data-page="...">; pages are rendered
// server-side and this script only keeps them current.
(function () {
  "use strict";

  var LABELS = { "present": "present", "late": "late", "absent": "absent", "excused": "excused", "not-yet": "not yet" };

  function fmt(iso, format) {
    if (!iso) { return "—"; }
    var d = new Date(iso);
    if (isNaN(d)) { return iso; }
    var opts = format === "datetime"
      ? { day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit" }
      : { hour: "2-digit", minute: "2-digit" };
    return d.toLocaleString([], opts);
  }

  function timeTag(iso, format) {
    if (!iso) { var dash = document.createElement("span"); dash.className = "muted"; dash.textContent = "—"; return dash; }
    var t = document.createElement("time");
    t.setAttribute("datetime", iso);
    t.dataset.format = format || "time";
    t.textContent = fmt(iso, t.dataset.format);
    return t;
  }

  function localizeTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) { t.textContent = fmt(t.getAttribute("datetime"), t.dataset.format); });
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function setStatus(cell, status) {
    cell.className = "status status-" + status;
    cell.dataset.status = status;
    cell.textContent = LABELS[status] || status;
  }

  function byData(root, attr, value) {
    return root.querySelector("[" + attr + "=\"" + CSS.escape(String(value)) + "\"]");
  }

  // One websocket that reconnects with backoff. On any close it first asks
  // /api/v1/me: that refreshes an expired cookie session (websocket
  // handshakes cannot), or tells us to log in again.
  function liveSocket(path, onMessage) {
    var indicator = document.getElementById("live-status");
    var socket = null;
    var delay = 1000;
    function setState(state) {
      if (!indicator) { return; }
      indicator.dataset.state = state;
      indicator.textContent = { connecting: "connecting…", live: "live", offline: "reconnecting…" }[state];
    }
    function send(message) {
      if (socket && socket.readyState === WebSocket.OPEN) { socket.send(JSON.stringify(message)); }
    }
    function connect() {
      setState("connecting");
      socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + path);
      socket.onmessage = function (event) {
        var message;
        try { message = JSON.parse(event.data); } catch (e) { return; }
        if (message.type === "snapshot") { setState("live"); delay = 1000; }
        onMessage(message, send);
      };
      socket.onclose = function () {
        setState("offline");
        fetch("/api/v1/me", { credentials: "same-origin" }).then(function (response) {
          if (response.status === 401) {
            location.href = "/login?next=" + encodeURIComponent(location.pathname);
            return;
          }
          schedule();
        }, schedule);
      };
    }
    function schedule() {
      setTimeout(connect, delay + Math.random() * 500);
      delay = Math.min(delay * 2, 30000);
    }
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) { send({ type: "resync" }); }  // phones pause background tabs
    });
    connect();
  }
  // --- shared page conventions (docs/ui-conventions.md) ------------------------

  // Ask before a destructive action. One <dialog> serves every page; it resolves
  // true only on the confirm button, false on Keep, Esc or a click on the backdrop.
  // Focus starts on the safe button, and returns to where it was when the dialog closes.
  function confirmAction(text, options) {
    options = options || {};
    var dialog = document.getElementById("confirm-dialog");
    if (!dialog) {
      dialog = el("dialog", "confirm-dialog");
      dialog.id = "confirm-dialog";
      dialog.setAttribute("aria-labelledby", "confirm-dialog-text");
      var message = el("p");
      message.id = "confirm-dialog-text";
      var actions = el("div", "dialog-actions");
      var keep = el("button", "btn-secondary", "Keep");
      keep.type = "button"; keep.id = "confirm-dialog-keep";
      var go = el("button", "btn-danger", "Confirm");
      go.type = "button"; go.id = "confirm-dialog-confirm";
      keep.addEventListener("click", function () { dialog.close("keep"); });
      go.addEventListener("click", function () { dialog.close("confirm"); });
      dialog.addEventListener("click", function (event) { if (event.target === dialog) { dialog.close("keep"); } });
      actions.appendChild(keep); actions.appendChild(go);
      dialog.appendChild(message); dialog.appendChild(actions);
      document.body.appendChild(dialog);
    }
    var returnTo = document.activeElement;
    dialog.querySelector("#confirm-dialog-text").textContent = text;
    dialog.querySelector("#confirm-dialog-keep").textContent = options.cancelLabel || "Keep";
    var confirmButton = dialog.querySelector("#confirm-dialog-confirm");
    confirmButton.textContent = options.confirmLabel || "Confirm";
    confirmButton.className = options.danger === false ? "btn-primary" : "btn-danger";
    dialog.returnValue = "";
    return new Promise(function (resolve) {
      dialog.addEventListener("close", function () {
        if (returnTo && returnTo.focus) { returnTo.focus(); }
        resolve(dialog.returnValue === "confirm");
      }, { once: true });
      dialog.showModal();
      dialog.querySelector("#confirm-dialog-keep").focus();
    });
  }

  // Say what happened right where the user acted: the .feedback element just after
  // the anchor (after a form's submit button when the anchor is a form), created on
  // first use. kind: "success" | "error" | "info"; empty text hides it.
  function feedback(anchor, text, kind) {
    if (anchor && anchor.tagName === "FORM") {
      var buttons = anchor.querySelectorAll("button[type=submit], button:not([type])");
      anchor = buttons.length ? buttons[buttons.length - 1] : anchor;
    }
    var node = anchor.nextElementSibling;
    if (!node || !node.classList.contains("feedback")) {
      node = el("p", "feedback");
      node.setAttribute("role", kind === "error" ? "alert" : "status");
      anchor.insertAdjacentElement("afterend", node);
    }
    node.className = "feedback feedback-" + (kind || "info");
    node.textContent = text || "";
    node.hidden = !text;
    if (text && node.scrollIntoView) { node.scrollIntoView({ block: "nearest" }); }
    return node;
  }

  // Call the JSON API: the one way page scripts do (docs/ui-conventions.md). The body goes as JSON
  // (none when undefined), or as it is with options.contentType (a CSV text or File). Resolves to the
  // parsed answer, null when it is empty (204) or not JSON. An error answer rejects with an Error
  // whose message is the API's own sentence and which carries status, code, field and data (the
  // whole answer: an import's per-line "errors", a sitting's "clashes"). A 413 says options.tooLarge
  // (or a plain default), not the server's technical sentence. options.loginOn401 sends the page to
  // the login when the session has ended. A network failure rejects with fetch's own TypeError (no status).
  function api(method, path, body, options) {
    options = options || {};
    var init = { method: method, credentials: "same-origin", headers: { "Accept": "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = options.contentType || "application/json";
      init.body = options.contentType ? body : JSON.stringify(body);
    }
    return fetch(path, init).then(function (response) {
      if (response.status === 401 && options.loginOn401) {
        location.href = "/login?next=" + encodeURIComponent(location.pathname);
      }
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (response.ok) { return data; }
        var problem = data && data.error ? data.error : {};
        var error = new Error(response.status === 413 ? (options.tooLarge || "That is too large to send.")
          : (problem.message || "That did not work (the server answered " + response.status + ")."));
        error.status = response.status;
        error.code = problem.code || null;
        error.field = problem.field || null;
        error.data = data;
        throw error;
      });
    });
  }

  // What to tell the user when a CampusHub.api call failed: the API's own sentence, or, when the
  // hub could not be reached at all (no status), that the connection is the problem.
  function apiProblem(error) { return error && error.status ? error.message : "No connection."; }

  // The menu button folds the nav on narrow screens (CSS shows the nav as a row on
  // wide ones). Esc closes it and gives focus back to the button.
  function initMenu() {
    var toggle = document.getElementById("menu-toggle");
    var nav = document.getElementById("site-nav");
    if (nav) {
      nav.querySelectorAll("a[href]").forEach(function (a) {
        if (a.getAttribute("href") === location.pathname) { a.setAttribute("aria-current", "page"); }
      });
    }
    if (!toggle || !nav) { return; }
    function setOpen(open) { toggle.setAttribute("aria-expanded", open ? "true" : "false"); }
    toggle.addEventListener("click", function () { setOpen(toggle.getAttribute("aria-expanded") !== "true"); });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && toggle.getAttribute("aria-expanded") === "true") { setOpen(false); toggle.focus(); }
    });
  }

  // A table wider than a phone scrolls inside its own box, never the page. A box that does
  // scroll and holds nothing focusable takes focus itself, so a keyboard can scroll it
  // (WCAG 2.1.1); it is then a named region.
  function boxTables(root) {
    root.querySelectorAll("main table").forEach(function (table) {
      if (table.closest(".table-wrap, .chart, dialog")) { return; }
      var wrap = el("div", "table-wrap");
      table.parentNode.insertBefore(wrap, table);
      wrap.appendChild(table);
    });
  }

  function wrapTables(root) {
    boxTables(root);
    root.querySelectorAll(".table-wrap").forEach(keyboardScrollable);
  }

  // Tables drawn or filled by page scripts after load get the same treatment, once per frame.
  function watchTables() {
    var main = document.getElementById("main");
    if (!main || !window.MutationObserver) { return; }
    var queued = false;
    function later() {
      if (queued) { return; }
      queued = true;
      requestAnimationFrame(function () { queued = false; wrapTables(document); });
    }
    // Only changes in or around tables count: a live console's tiles must not cost a layout per frame.
    function touchesTable(record) {
      var target = record.target;
      if (target.closest && target.closest(".table-wrap, table")) { return true; }
      return Array.prototype.some.call(record.addedNodes, function (node) {
        return node.nodeType === 1 && (node.tagName === "TABLE" || !!node.querySelector("table"));
      });
    }
    // The box goes round a new table at once (no layout needed), so the page never shows a frame
    // that scrolls sideways; the focus check, which measures, waits for the next frame.
    new MutationObserver(function (records) { if (records.some(touchesTable)) { boxTables(document); later(); } })
      .observe(main, { childList: true, subtree: true });
    window.addEventListener("resize", later);
  }

  function keyboardScrollable(wrap) {
    var scrolls = wrap.scrollWidth > wrap.clientWidth + 1;
    var focusable = Array.prototype.some.call(
      wrap.querySelectorAll("a[href], button, input, select, textarea, [tabindex]"), function (node) {
        return node.tabIndex >= 0 && !node.disabled && node.getClientRects().length > 0 &&
          getComputedStyle(node).visibility !== "hidden";
      });
    if (scrolls && !focusable) {
      var table = wrap.querySelector("table");
      var caption = table && table.caption ? table.caption.textContent : "";
      var section = wrap.closest("section");
      var heading = section && section.querySelector("h1, h2, h3");
      wrap.tabIndex = 0;
      wrap.setAttribute("role", "region");
      wrap.setAttribute("aria-label", (caption || (heading && heading.textContent) || "Table").trim() + " (scrolls sideways)");
    } else if (!scrolls && wrap.getAttribute("role") === "region") {
      wrap.removeAttribute("tabindex"); wrap.removeAttribute("role"); wrap.removeAttribute("aria-label");
    }
  }

  // Shared with the other page scripts (loaded after this one, all deferred): one websocket
  // client, one element helper, the confirmation dialog and inline feedback.
  // --- Searchable picker: one accessible combobox for every long list (rooms, courses, people, ...) ---
  // A <select data-picker> stays the value carrier (hidden, named, submitted with its form, read by page
  // scripts); the picker adds an <input role=combobox> + listbox in front of it that filters the select's
  // options by every typed word and shows their names. Page scripts keep using the select as before:
  // filling its <option>s, setting .value and listening to "change" all work (a MutationObserver and a
  // per-instance .value setter keep the visible text in step). Picking dispatches input + change on the
  // select. Single-threaded like all page JS; event listeners only.
  var PICKER_SHOWN = 50;  // options rendered at once; the rest are reached by typing more
  var pickerCount = 0;

  function pickerText(option) {
    var group = option.parentElement && option.parentElement.tagName === "OPTGROUP" ? option.parentElement.label : "";
    return { label: option.text, group: group, haystack: (option.text + " " + group).toLowerCase() };
  }

  function picker(select) {
    if (select.dataset.pickerReady) { return select.previousElementSibling; }
    select.dataset.pickerReady = "1";
    var n = ++pickerCount;
    var wrap = el("span", "picker");  // a span: it may sit inside a <label>
    var input = el("input", "picker-input");
    input.type = "text";
    input.id = (select.id || "picker-" + n) + "-picker";
    input.autocomplete = "off";
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-expanded", "false");
    input.placeholder = select.dataset.picker || "Type to search";
    var list = el("ul", "picker-list");
    list.id = input.id + "-list";
    list.setAttribute("role", "listbox");
    list.hidden = true;
    input.setAttribute("aria-controls", list.id);
    var more = el("span", "picker-more");
    more.hidden = true;
    more.setAttribute("aria-live", "polite");
    var required = select.required;
    select.required = false;  // a hidden control cannot show the browser's message; the input does
    select.parentNode.insertBefore(wrap, select);
    wrap.appendChild(input); wrap.appendChild(list); wrap.appendChild(more); wrap.appendChild(select);
    select.hidden = true;
    select.tabIndex = -1;
    if (select.id) {  // <label for="the-select"> now names the input the user types in
      document.querySelectorAll('label[for="' + select.id + '"]').forEach(function (l) { l.htmlFor = input.id; });
    }
    if (select.getAttribute("aria-label")) { input.setAttribute("aria-label", select.getAttribute("aria-label")); }

    var shown = [];   // the <option>s listed right now, in order
    var active = -1;  // index into shown of the highlighted one

    function current() { return select.selectedIndex >= 0 ? select.options[select.selectedIndex] : null; }
    function sync() {  // the visible text follows the select, whoever changed it
      var option = current();
      if (document.activeElement !== input || list.hidden) { input.value = option && option.value !== "" ? option.text : ""; }
      input.disabled = select.disabled;
      input.setCustomValidity(required && !select.value ? "Choose one from the list: type part of its name." : "");
    }
    function close() {
      list.hidden = true; more.hidden = true; active = -1;
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
    }
    function highlight(index) {
      var items = list.children;
      if (active >= 0 && items[active]) { items[active].classList.remove("picker-active"); items[active].setAttribute("aria-selected", "false"); }
      active = index;
      if (active < 0 || !items[active]) { input.removeAttribute("aria-activedescendant"); return; }
      items[active].classList.add("picker-active");
      items[active].setAttribute("aria-selected", "true");
      input.setAttribute("aria-activedescendant", items[active].id);
      items[active].scrollIntoView({ block: "nearest" });
    }
    function open(query) {
      var words = (query || "").toLowerCase().split(/\s+/).filter(Boolean);
      var matches = Array.prototype.filter.call(select.options, function (o) {
        if (o.disabled || (required && o.value === "")) { return false; }  // "—" is not a choice when one is required
        var text = pickerText(o).haystack;
        return words.every(function (w) { return text.indexOf(w) >= 0; });
      });
      shown = matches.slice(0, PICKER_SHOWN);
      list.textContent = "";
      shown.forEach(function (o, i) {
        var t = pickerText(o);
        var li = el("li", "picker-option", o.value === "" ? (t.label || "None") : t.label);
        li.id = list.id + "-" + i;
        li.setAttribute("role", "option");
        li.setAttribute("aria-selected", "false");
        li.dataset.value = o.value;
        if (t.group) { li.appendChild(el("span", "picker-group", t.group)); }
        li.addEventListener("mousedown", function (e) { e.preventDefault(); });  // keep focus in the input
        li.addEventListener("click", function (e) { e.preventDefault(); choose(i); });  // no label re-activation
        list.appendChild(li);
      });
      if (!shown.length) {
        more.textContent = "Nothing matches \u201c" + query + "\u201d."; more.hidden = false;
      } else if (matches.length > shown.length) {
        more.textContent = "Showing " + shown.length + " of " + matches.length + ": type more to narrow."; more.hidden = false;
      } else { more.hidden = true; }
      list.hidden = !shown.length;
      input.setAttribute("aria-expanded", shown.length ? "true" : "false");
      active = -1;
      highlight(words.length && shown.length ? 0 : -1);
    }
    function choose(index) {
      var option = shown[index];
      if (!option) { return; }
      close();
      var changed = select.value !== option.value;
      select.value = option.value;
      sync();
      if (changed) {
        select.dispatchEvent(new Event("input", { bubbles: true }));
        select.dispatchEvent(new Event("change", { bubbles: true }));
      }
    }

    input.addEventListener("input", function () { open(input.value); });
    input.addEventListener("click", function () { if (list.hidden) { open(""); } });
    input.addEventListener("focus", function () { input.select(); });
    input.addEventListener("keydown", function (e) {
      if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        e.preventDefault();
        if (list.hidden) { open(""); }
        var count = list.children.length;
        if (!count) { return; }
        highlight(e.key === "ArrowDown" ? Math.min(active + 1, count - 1) : Math.max(active - 1, 0));
      } else if (e.key === "Enter" && !list.hidden) {
        e.preventDefault();  // picking is not submitting
        choose(active >= 0 ? active : 0);
      } else if (e.key === "Escape") {
        if (!list.hidden) { e.preventDefault(); e.stopPropagation(); }
        close(); sync();
      } else if (e.key === "Tab" && !list.hidden && active >= 0) {
        choose(active);
      }
    });
    input.addEventListener("blur", function () {
      // Text that names exactly one option picks it; anything else goes back to the current choice.
      var typed = input.value.trim().toLowerCase();
      var exact = Array.prototype.filter.call(select.options, function (o) { return o.text.toLowerCase() === typed; });
      close();
      if (exact.length === 1 && exact[0].value !== select.value) { shown = exact; choose(0); } else { sync(); }
    });

    var proto = Object.getOwnPropertyDescriptor(HTMLSelectElement.prototype, "value");
    var protoIndex = Object.getOwnPropertyDescriptor(HTMLSelectElement.prototype, "selectedIndex");
    Object.defineProperty(select, "value", {
      configurable: true,
      get: function () { return proto.get.call(select); },
      set: function (v) { proto.set.call(select, v); sync(); },
    });
    Object.defineProperty(select, "selectedIndex", {
      configurable: true,
      get: function () { return protoIndex.get.call(select); },
      set: function (v) { protoIndex.set.call(select, v); sync(); },
    });
    new MutationObserver(sync).observe(select, { childList: true, subtree: true, attributes: true, attributeFilter: ["disabled"] });
    select.addEventListener("change", sync);
    if (select.form) { select.form.addEventListener("reset", function () { setTimeout(sync, 0); }); }
    sync();
    return input;
  }

  document.querySelectorAll("select[data-picker]").forEach(picker);

  window.CampusHub = { liveSocket: liveSocket, el: el, confirmAction: confirmAction, feedback: feedback, picker: picker,
                       api: api, apiProblem: apiProblem };

  // --- faculty: live roster ---------------------------------------------------

  function initRoster() {
    var table = document.getElementById("roster");
    var tbody = table.tBodies[0];
    var sessionId = table.dataset.sessionId;

    function updateCounts() {
      var counts = { present: 0, late: 0, missing: 0, enrolled: 0 };
      tbody.querySelectorAll("td.status").forEach(function (cell) {
        var s = cell.dataset.status;
        counts.enrolled += 1;
        if (s === "present" || s === "late") { counts[s] += 1; }
        else if (s === "not-yet" || s === "absent") { counts.missing += 1; }
      });
      Object.keys(counts).forEach(function (key) {
        var node = document.getElementById("count-" + key);
        if (node) { node.textContent = counts[key]; }
      });
    }

    function row(student) {
      var tr = el("tr", "roster-row");
      tr.dataset.studentId = student.student_id;
      var select = el("td", "select-col");
      var box = el("input", "row-select");
      box.type = "checkbox";
      box.setAttribute("aria-label", "Select " + student.name);
      select.appendChild(box);
      tr.appendChild(select);  // roster.js keeps the selection and the search filter
      tr.appendChild(el("td", "name", student.name));
      tr.appendChild(el("td", "roll", student.roll_number));
      var status = el("td");
      setStatus(status, student.status);
      tr.appendChild(status);
      var at = el("td", "checked-in");
      at.appendChild(timeTag(student.checked_in_at));
      tr.appendChild(at);
      return tr;
    }

    liveSocket(table.dataset.ws, function (message, send) {
      // roster.js (flags panel) follows the same feed: one socket per page.
      document.dispatchEvent(new CustomEvent("roster-message", { detail: message }));
      if (message.type === "snapshot") {
        var fresh = document.createElement("tbody");
        message.students.forEach(function (s) { fresh.appendChild(row(s)); });
        table.replaceChild(fresh, tbody);
        tbody = fresh;
        updateCounts();
      } else if (message.type === "attendance" && message.session_id === sessionId) {
        var tr = byData(tbody, "data-student-id", message.student_id);
        if (!tr) { send({ type: "resync" }); return; }  // enrolled after the snapshot
        setStatus(tr.querySelector("td.status"), message.status);
        var at = tr.querySelector("td.checked-in");
        at.replaceChildren(timeTag(message.checked_in_at));
        tr.classList.remove("flash"); void tr.offsetWidth; tr.classList.add("flash");
        updateCounts();
      } else if (message.type === "roster" && message.session_id === sessionId) {
        // Enrolled (or reactivated) students join, deactivated ones leave: no reload needed.
        message.removed.forEach(function (id) {
          var gone = byData(tbody, "data-student-id", id);
          if (gone) { gone.remove(); }
        });
        message.added.forEach(function (s) {
          var old = byData(tbody, "data-student-id", s.student_id);
          if (old) { old.replaceWith(row(s)); } else { tbody.appendChild(row(s)); }
        });
        updateCounts();
      }
    });
  }

  // --- ops: device grid ---------------------------------------------------------

  function initDevices() {
    var grid = document.getElementById("devices");

    function apply(card, d) {
      if ("online" in d) {
        card.classList.toggle("device-online", !!d.online);
        card.classList.toggle("device-offline", !d.online);
        card.querySelector(".state").textContent = d.online ? "online" : "offline";
      }
      if ("last_seen" in d) { card.querySelector(".last-seen").replaceChildren(timeTag(d.last_seen, "datetime")); }
      if ("firmware" in d) { card.querySelector(".firmware").textContent = d.firmware || "—"; }
      if ("outbox_depth" in d) { card.querySelector(".outbox").textContent = d.outbox_depth; }
      if ("reason" in d) { card.querySelector(".reason").textContent = d.reason || ""; }
    }

    function card(d) {
      var article = el("article", "device" + (d.revoked ? " device-revoked" : ""));
      article.dataset.deviceId = d.device_id;
      article.appendChild(el("h2", "device-id", d.device_id));
      var room = el("p", "room", d.room_name + " · ");
      room.appendChild(el("span", "kind", d.kind));
      article.appendChild(room);
      article.appendChild(el("p", "state"));
      var dl = el("dl");
      [["Last seen", "last-seen"], ["Firmware", "firmware"], ["Outbox", "outbox"]].forEach(function (pair) {
        dl.appendChild(el("dt", null, pair[0]));
        dl.appendChild(el("dd", pair[1]));
      });
      article.appendChild(dl);
      article.appendChild(el("p", "reason muted"));
      apply(article, d);
      return article;
    }

    function updateCounts() {
      document.getElementById("devices-online").textContent = grid.querySelectorAll(".device-online").length;
      document.getElementById("devices-total").textContent = grid.querySelectorAll(".device").length;
    }

    liveSocket(grid.dataset.ws, function (message, send) {
      if (message.type === "snapshot") {
        grid.replaceChildren.apply(grid, message.devices.map(card));
        updateCounts();
      } else if (message.type === "device") {
        var existing = byData(grid, "data-device-id", message.device_id);
        if (!existing) { send({ type: "resync" }); return; }  // registered after the snapshot
        apply(existing, message);
        updateCounts();
      }
    });
  }

  // --- student: rotating QR and own attendance -------------------------------

  function initStudent() {
    var img = document.getElementById("qr");
    var every = parseInt(img.dataset.refreshMs, 10) || 5000;
    setInterval(function () {
      if (!document.hidden) { img.src = "/student/qr.svg?t=" + Date.now(); }
    }, every);
    img.addEventListener("error", function () {
      fetch("/api/v1/me", { credentials: "same-origin" }).then(function (r) {
        if (r.status === 401) { location.href = "/login?next=/student"; }
      });
    });

    var section = document.getElementById("attendance");
    var toast = document.getElementById("checkin-toast");

    function recount(article) {  // same rule as the server: not-yet sessions do not count yet
      var attended = 0, total = 0;
      article.querySelectorAll("td.status").forEach(function (cell) {
        var s = cell.dataset.status;
        if (s !== "not-yet") { total += 1; }
        if (s === "present" || s === "late" || s === "excused") { attended += 1; }
      });
      var node = article.querySelector(".attended");
      if (node) { node.textContent = attended + "/" + total; }
    }
    liveSocket(section.dataset.ws, function (message, send) {
      if (message.type === "snapshot") {
        var stale = false;
        message.courses.forEach(function (course) {
          var article = byData(section, "data-course-id", course.course_id);
          if (!article) { stale = true; return; }
          course.sessions.forEach(function (s) {
            var tr = byData(article, "data-session-id", s.session_id);
            if (tr) { setStatus(tr.querySelector("td.status"), s.status); }
            else { stale = true; }  // a session opened since this page was rendered
          });
          recount(article);
        });
        if (stale) { location.reload(); }  // the server renders new rows; reloading is simplest
      } else if (message.type === "attendance") {
        var tr = byData(section, "data-session-id", message.session_id);
        if (tr) {
          setStatus(tr.querySelector("td.status"), message.status);
          tr.querySelector("td.checked-in").replaceChildren(timeTag(message.checked_in_at));
          recount(tr.closest("article"));
        } else {
          send({ type: "resync" });
        }
        toast.textContent = "Checked in: " + (LABELS[message.status] || message.status) + " at " + fmt(message.checked_in_at);
        toast.hidden = false;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    initMenu();
    wrapTables(document);
    watchTables();
    localizeTimes(document);
    var page = document.body.dataset.page;
    if (page === "faculty-session") { initRoster(); }
    else if (page === "ops") { initDevices(); }
    else if (page === "student") { initStudent(); }
  });
})();
