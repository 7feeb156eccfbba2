"""Playwright driving Debian's Chromium (never a downloaded browser).

trio-asyncio replaces asyncio's global event-loop policy once imported, and
Playwright cannot run on its loop; so browser code runs on a plain
``SelectorEventLoop`` in a worker thread (:func:`run_in_browser_thread`).
"""
from __future__ import annotations

import asyncio
import tempfile
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable

import trio
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps trying hosts this
# machine cannot reach; --no-sandbox because CI runs as root.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


@asynccontextmanager
async def chromium(*, phone: bool = False) -> AsyncIterator[BrowserContext]:
    """A headless Chromium with a throwaway profile; ``phone`` gives a phone-sized viewport."""
    with tempfile.TemporaryDirectory() as profile:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 390, "height": 844} if phone else None, is_mobile=phone, has_touch=phone)
            try:
                yield context
            finally:
                await context.close()


async def run_in_browser_thread(script: Callable[[], Awaitable[Any]]) -> Any:
    """Run the asyncio coroutine function ``script`` on a plain event loop in a worker thread."""

    def run() -> Any:
        loop = asyncio.SelectorEventLoop()
        try:
            return loop.run_until_complete(script())
        finally:
            loop.close()

    return await trio.to_thread.run_sync(run)


# --- the every-page suite's pieces (tests/browser/test_every_page.py and the phone tests) ------------------

#: The two sizes every page is looked at (issue 15): a laptop and a phone.
DESKTOP = {"width": 1366, "height": 800}
PHONE = {"width": 390, "height": 844}

#: What "passes WCAG 2.1 AA" is checked against: axe-core's rules tagged for levels A and AA of 2.0 and 2.1.
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
#: The impacts that fail a page (issue 15: "no serious or critical violations").
FAILING_IMPACTS = ("serious", "critical")


@asynccontextmanager
async def chromium_browser() -> AsyncIterator[Browser]:
    """One headless Chromium for many contexts (one per role and size): cheaper than a browser each."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def new_sized_context(browser: Browser, *, phone: bool, storage_state: Any = None) -> BrowserContext:
    """A context at the phone or desktop size (a phone also gets touch and the mobile viewport meta)."""
    return await browser.new_context(viewport=PHONE if phone else DESKTOP, is_mobile=phone, has_touch=phone,
                                     storage_state=storage_state)


def console_errors(page: Page) -> list[str]:
    """A list that fills with the text of every console error ``page`` logs from now on."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    return errors


async def log_in(page: Page, base: str, username: str, password: str) -> None:
    """Log in through the login form, as a person does, and wait to leave the login page."""
    await page.goto(f"{base}/login")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#login-submit")
    await page.wait_for_url(lambda url: "/login" not in url)


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A/AA violations of serious or critical impact on the page as it is now.

    axe-core comes from the ``axe-playwright-python`` wheel (it bundles ``axe.min.js``; see
    docs/dependencies.md): nothing is fetched at test time. Each item keeps axe's ``id``, ``impact``,
    ``help`` and the first few offending ``targets``.
    """
    results = await Axe().run(page, options={"runOnly": {"type": "tag", "values": WCAG_21_AA},
                                             "resultTypes": ["violations"]})
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "targets": [", ".join(map(str, node["target"])) for node in v["nodes"][:4]]}
            for v in results.response["violations"] if v.get("impact") in FAILING_IMPACTS]


#: Elements sticking out past the right edge of the viewport, outside any box that scrolls them:
#: what makes a phone page scroll sideways. Empty when nothing overflows.
_OVERFLOWING = """() => {
  const width = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth <= width) { return []; }
  const scrolls = (el) => { for (let p = el.parentElement; p; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll' || o === 'hidden') return true; }
    return false; };
  const found = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.right > width + 1 && r.width > 0 && !scrolls(el)) {
      found.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
                 (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\\s+/).join('.') : '') +
                 ' right=' + Math.round(r.right));
      if (found.length >= 4) break;
    }
  }
  return found.length ? found : ['document ' + document.documentElement.scrollWidth + ' > ' + width];
}"""


async def horizontal_overflow(page: Page) -> list[str]:
    """Why the page scrolls sideways (up to four offending elements), or ``[]`` when it does not."""
    return list(await page.evaluate(_OVERFLOWING))


#: Controls a thumb must hit: buttons, form fields and the menu's links (links inside running text
#: are exempt, as in WCAG 2.5.5). Hidden ones and those inside a closed <details> do not count.
_SMALL_TARGETS = """() => {
  const found = [];
  const sel = 'button, select, textarea, input:not([type=checkbox]):not([type=radio]):not([type=hidden]), .nav a';
  for (const el of document.querySelectorAll(sel)) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || getComputedStyle(el).visibility === 'hidden') continue;
    if (r.height < 43.5) {
      const name = (el.textContent || el.getAttribute('aria-label') || '').trim().slice(0, 30);
      found.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + ' "' + name + '" ' + Math.round(r.height) + 'px');
      if (found.length >= 4) break;
    }
  }
  return found;
}"""


async def small_tap_targets(page: Page) -> list[str]:
    """Visible controls shorter than 44 px (up to four), or ``[]``."""
    return list(await page.evaluate(_SMALL_TARGETS))


async def open_menu(page: Page) -> None:
    """Unfold the navigation as a person on a phone does (the Menu button); nothing on a wide screen,
    where the links are always shown."""
    toggle = page.locator("#menu-toggle")
    if await toggle.is_visible() and await toggle.get_attribute("aria-expanded") != "true":
        await toggle.click()


async def pick(page: Page, select: str, value: str, *, typed: str | None = None) -> None:
    """Choose ``value`` in the searchable picker (``CampusHub.picker``, app.js) that fronts ``select``
    (a CSS selector of the hidden ``<select data-picker>``), as a keyboard user does: type part of the
    option's name (``typed``, default its whole name), arrow down to it, press Enter.

    Fails (by timeout) if the option is not offered for what was typed."""
    target = page.locator(select)
    await target.wait_for(state="attached")
    await page.wait_for_function(
        "([s, v]) => { const e = document.querySelector(s); return e && e.dataset.pickerReady &&"
        " Array.from(e.options).some(o => o.value === v); }", arg=[select, value])
    name, box = await target.evaluate(
        "(s, v) => [Array.from(s.options).find(o => o.value === v).text,"
        " s.parentElement.querySelector('[role=combobox]').id]", value)
    combobox = page.locator(f"#{box}")
    await combobox.click()
    await combobox.fill("")
    await combobox.press_sequentially(typed if typed is not None else name)
    listbox = page.locator(f"#{box}-list")
    wanted = listbox.locator(f'[role="option"][data-value="{value}"]')
    await wanted.wait_for(state="visible")
    for _ in range(await listbox.locator('[role="option"]').count()):
        if await wanted.get_attribute("aria-selected") == "true":
            break
        await combobox.press("ArrowDown")
    await combobox.press("Enter")
    await page.wait_for_function("([s, v]) => document.querySelector(s).value === v", arg=[select, value])
