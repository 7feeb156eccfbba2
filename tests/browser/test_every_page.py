"""Every page, in every role, at both sizes (issue 15's browser suite).

The page list comes from the app's own routes (``create_app(...).url_map``), so a page added later is
covered without editing this file: every GET route outside the API, static files and images is a page.
A page whose path has parameters (``/faculty/sessions/<session_id>``) is reached the way a person reaches
it: by a link on a page that role already saw. Each page is checked for

- no console errors and no uncaught exceptions,
- no horizontal overflow at phone size (390×844), and no control under 44 px tall there,
- no axe-core WCAG 2.1 A/AA violation of serious or critical impact,

and screenshotted: under the test's tmp path, or under ``$CAMPUSHUB_ARTIFACTS/every-page`` when that is
set (e.g. ``CAMPUSHUB_ARTIFACTS=artifacts``, ignored by git); the directory is printed.
One browser, one hub; each role logs in once and the phone contexts reuse the desktop login's cookies.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.browser_helpers import (
    axe_violations,
    chromium_browser,
    horizontal_overflow,
    log_in,
    new_sized_context,
    run_in_browser_thread,
    small_tap_targets,
)

from hub.db.seed import DEMO_PASSWORD
from web.app import create_app

#: Pages this suite does not open, and why (each is covered elsewhere).
NOT_VISITED = {
    "/c/<session_id>/<int:window>/<code>": "the projector QR's scan link; tests/browser/test_browser_checkin.py",
    "/checkin/<pending>": "the page a scan lands on; tests/browser/test_browser_checkin.py",
    "/logout": "visited signed out only: opening it signed in would end the role's session",
}
#: GET routes that are not pages a person reads.
NOT_PAGES = re.compile(r"^/(api/|static/|metrics$|healthz$)|\.(svg|csv|json|png|zip|toml)$")
ROLES = ("student", "faculty", "ops", "admin")
#: How long a page's live feed may take to say "live" before that counts as a defect.
LIVE_WITHIN_MS = 10_000


def page_rules() -> list[str]:
    """Every page route of the app (its rule text), from the url map the server itself uses."""
    app = create_app(None)  # type: ignore[arg-type]  # only the url map is read; nothing is served
    rules = {rule.rule for rule in app.url_map.iter_rules()
             if not getattr(rule, "websocket", False) and "GET" in (rule.methods or ())
             and not NOT_PAGES.search(rule.rule)}
    return sorted(rules)


def screenshot_dir(tmp_path: Path) -> Path:
    """Where the screenshots go: ``$CAMPUSHUB_ARTIFACTS/every-page`` when set, else the test's tmp path."""
    artifacts = os.environ.get("CAMPUSHUB_ARTIFACTS")
    return Path(artifacts).resolve() / "every-page" if artifacts else tmp_path / "screenshots"


def rule_pattern(rule: str) -> re.Pattern[str]:
    """The paths a werkzeug rule matches (``<int:x>`` digits, ``<path:x>`` anything, else one segment)."""
    out, pos = "", 0
    for m in re.finditer(r"<(?:(\w+):)?\w+>", rule):
        out += re.escape(rule[pos:m.start()])
        out += {"int": r"\d+", "path": r".+"}.get(m.group(1) or "", r"[^/?#]+")
        pos = m.end()
    return re.compile(out + re.escape(rule[pos:]) + r"$")


@dataclass
class Findings:
    visits: int = 0
    problems: list[str] = field(default_factory=list)
    seen: dict[str, set[str]] = field(default_factory=dict)  # rule -> roles that saw it
    redirects: set[str] = field(default_factory=set)  # rules that only send a role elsewhere (e.g. "/")

    def add(self, where: str, what: str) -> None:
        self.problems.append(f"{where}: {what}")


async def check_page(page: Any, base: str, path: str, *, where: str, phone: bool, shots: Path,
                     findings: Findings, refused: bool = False) -> list[str]:
    """Open one page, check it, screenshot it; returns the same-origin paths it links to."""
    errors: list[str] = []
    on_console = lambda msg: errors.append(msg.text) if msg.type == "error" else None  # noqa: E731
    on_error = lambda exc: errors.append(f"uncaught: {exc}")  # noqa: E731
    page.on("console", on_console)
    page.on("pageerror", on_error)
    try:
        await page.goto(base + path, wait_until="load")
        live = page.locator("#live-status")
        if await live.count():
            try:
                await page.locator('#live-status[data-state="live"]').wait_for(timeout=LIVE_WITHIN_MS)
            except Exception:
                findings.add(where, f"live feed not live within {LIVE_WITHIN_MS} ms")
        findings.visits += 1
        if refused:  # the browser logs the refusal's status itself: the error page is what is checked
            errors = [e for e in errors if "the server responded with a status of 40" not in e]
        for text in errors:
            findings.add(where, f"console: {text[:300]}")
        if phone:
            overflow = await horizontal_overflow(page)
            if overflow:
                findings.add(where, f"horizontal overflow on phone: {overflow}")
            small = await small_tap_targets(page)
            if small:
                findings.add(where, f"tap targets under 44 px on phone: {small}")
        for violation in await axe_violations(page):
            findings.add(where, f"axe {violation['impact']} {violation['id']} ({violation['help']}): "
                                f"{violation['targets']}")
        slug = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "home"
        await page.screenshot(path=str(shots / f"{slug}.png"), full_page=True)
        hrefs = await page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    finally:
        page.remove_listener("console", on_console)
        page.remove_listener("pageerror", on_error)
    return [h.split("#")[0].split("?")[0] for h in hrefs if h and h.startswith("/") and not h.startswith("//")]


async def tour(browser: Any, base: str, role: str | None, username: str | None, *, rules: list[str],
               shots: Path, findings: Findings) -> None:
    """One role at both sizes: find its pages at desktop size (following links to parametrised ones),
    then look at the same pages on a phone with the same login."""
    label = role or "signed-out"
    desktop = await new_sized_context(browser, phone=False)
    page = await desktop.new_page()
    if username is not None:
        await log_in(page, base, username, DEMO_PASSWORD)
    plain = [r for r in rules if "<" not in r and r not in NOT_VISITED]
    if role is None:
        plain = [r for r in rules if "<" not in r]
    patterns = {r: rule_pattern(r) for r in rules if "<" in r and r not in NOT_VISITED}
    queue: list[tuple[str, str]] = [(r, r) for r in plain]
    visited: list[tuple[str, str, bool]] = []
    refused_shown = False
    links: set[str] = set()
    while queue:
        rule, path = queue.pop(0)
        probe = await desktop.request.get(base + path, max_redirects=0)
        kind = probe.headers.get("content-type", "")
        if 300 <= probe.status < 400:
            findings.redirects.add(rule)
            continue
        if "text/html" not in kind:
            continue  # not this role's page (sent to log in, or to the role's home) or not a page at all
        if probe.status >= 500:
            findings.add(f"desktop {label} {path}", f"server error {probe.status}")
            continue
        refused = probe.status >= 400
        if refused and refused_shown:
            continue  # one refusal per role is enough to check the error page
        refused_shown = refused_shown or refused
        (shots / "desktop" / label).mkdir(parents=True, exist_ok=True)
        found = await check_page(page, base, path, where=f"desktop {label} {path}", phone=False,
                                 shots=shots / "desktop" / label, findings=findings, refused=refused)
        visited.append((rule, path, refused))
        if not refused:
            findings.seen.setdefault(rule, set()).add(label)
        links.update(found)
        for pending_rule, pattern in list(patterns.items()):
            match = next((link for link in sorted(links) if pattern.match(link)), None)
            if match is not None:
                del patterns[pending_rule]
                queue.append((pending_rule, match))
    state = await desktop.storage_state()
    await desktop.close()

    phone = await new_sized_context(browser, phone=True, storage_state=state)
    page = await phone.new_page()
    (shots / "phone" / label).mkdir(parents=True, exist_ok=True)
    for _rule, path, refused in visited:
        await check_page(page, base, path, where=f"phone {label} {path}", phone=True,
                         shots=shots / "phone" / label, findings=findings, refused=refused)
    await phone.close()


async def test_every_page_in_every_role_at_both_sizes(hub, hub_campus, tmp_path):
    base = f"http://127.0.0.1:{hub.web_port}"
    rules = page_rules()
    logins = {login.role: login.username for login in hub_campus.logins}
    shots = screenshot_dir(tmp_path)
    findings = Findings()

    async def run() -> float:
        started = time.monotonic()
        async with chromium_browser() as browser:
            await tour(browser, base, None, None, rules=rules, shots=shots, findings=findings)
            for role in ROLES:
                await tour(browser, base, role, logins[role], rules=rules, shots=shots, findings=findings)
        return time.monotonic() - started

    took = await run_in_browser_thread(run)
    print(f"\nevery-page suite: {findings.visits} page views in {took:.0f} s; screenshots in {shots}")
    unseen = [r for r in rules if r not in findings.seen and r not in findings.redirects and r not in NOT_VISITED]
    problems = findings.problems + [f"no role reached {rule} (no link leads to it?)" for rule in unseen]
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)
