"""On a phone (390×844): the menu folds behind a button that works by touch and keyboard, and the
faculty's live roster has a search and a mark panel that stays on screen while the roster scrolls."""
from __future__ import annotations

from support.browser_helpers import chromium_browser, log_in, new_sized_context, run_in_browser_thread

from hub.db.seed import DEMO_PASSWORD


async def test_phone_menu_and_live_roster_search_and_sticky_mark_panel(hub, hub_campus, test_db):
    base = f"http://127.0.0.1:{hub.web_port}"
    faculty = next(login.username for login in hub_campus.logins if login.role == "faculty")
    absent_before = await test_db.fetchval("SELECT count(*) FROM attendance WHERE status = 'absent'")

    async def script() -> dict:
        seen: dict = {}
        async with chromium_browser() as browser:
            context = await new_sized_context(browser, phone=True)
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await log_in(page, base, faculty, DEMO_PASSWORD)
            await page.goto(f"{base}/faculty")

            # --- the menu: folded, opened by a tap, closed by Esc, operable from the keyboard ---
            toggle, nav = page.locator("#menu-toggle"), page.locator("#site-nav")
            seen["folded"] = (await toggle.get_attribute("aria-expanded"), await nav.is_visible())
            await toggle.tap()
            seen["tapped"] = (await toggle.get_attribute("aria-expanded"), await nav.is_visible())
            heights = await nav.locator("a").evaluate_all("els => els.map(e => e.getBoundingClientRect().height)")
            seen["link_heights"] = heights
            seen["current"] = await nav.locator('a[aria-current="page"]').get_attribute("href")
            await page.keyboard.press("Escape")
            seen["escaped"] = (await toggle.get_attribute("aria-expanded"), await nav.is_visible(),
                               await page.evaluate("document.activeElement.id"))
            await page.keyboard.press("Enter")  # focus is on the button: Enter opens it again
            await page.keyboard.press("Tab")  # ... and Tab goes into the menu, not past it
            seen["keyboard"] = (await toggle.get_attribute("aria-expanded"),
                                await page.evaluate("!!document.activeElement.closest('#site-nav')"))
            await page.keyboard.press("Escape")

            # --- the live roster: search, row checkboxes, sticky mark panel ---
            session_link = page.locator('a[href^="/faculty/sessions/"]').first
            await page.goto(base + await session_link.get_attribute("href"))
            await page.locator('#live-status[data-state="live"]').wait_for(timeout=10_000)
            rows = page.locator("#roster tr.roster-row")
            total = await rows.count()
            first_name = (await rows.first.locator(".name").text_content() or "").strip()
            query = first_name.split()[-1][:4].upper()  # part of a surname, another case
            await page.fill("#roster-search", query)
            names = await rows.locator(".name").all_text_contents()
            expected = sum(1 for name in names if query.lower() in name.lower())
            seen["search"] = (total, expected, await page.locator("#roster tr.roster-row:not([hidden])").count(),
                              await page.locator("#roster-search-count").text_content())
            await page.fill("#roster-search", "")
            seen["cleared"] = await page.locator("#roster tr.roster-row:not([hidden])").count()

            await page.evaluate("window.scrollTo(0, 0)")
            panel = page.locator("#mark-panel")
            box = await panel.bounding_box()
            seen["panel_at_top"] = (box["y"], box["y"] + box["height"], await page.evaluate("innerHeight"),
                                    await page.evaluate("document.documentElement.scrollHeight"))

            # Select by keyboard (the row's checkbox), then mark from the panel without scrolling.
            target = rows.nth(total // 2)
            student_id = await target.get_attribute("data-student-id")
            await target.locator("input.row-select").focus()
            await page.keyboard.press("Space")
            seen["selected"] = await page.locator("#mark-selected-count").text_content()
            await panel.locator('button[data-mark="excused"]').tap()
            await page.locator(f'#roster tr[data-student-id="{student_id}"] td.status[data-status="excused"]').wait_for(
                timeout=10_000)
            seen["after_mark"] = await page.locator("#mark-selected-count").text_content()

            # The bulk action asks first; Esc keeps everything as it was.
            await page.click("#mark-unmarked")
            dialog = page.locator("#confirm-dialog")
            await dialog.wait_for(state="visible")
            seen["dialog_focus"] = await page.evaluate("document.activeElement.id")
            await page.keyboard.press("Escape")
            await dialog.wait_for(state="hidden")
            seen["errors"] = errors
            seen["overflow"] = await page.evaluate("document.documentElement.scrollWidth - innerWidth")
        return seen

    seen = await run_in_browser_thread(script)
    assert seen["folded"] == ("false", False)
    assert seen["tapped"] == ("true", True)
    assert seen["link_heights"] and min(seen["link_heights"]) >= 44
    assert seen["current"] == "/faculty"
    assert seen["escaped"] == ("false", False, "menu-toggle")
    assert seen["keyboard"] == ("true", True)

    total, expected, shown, count_text = seen["search"]
    assert 0 < expected == shown < total or expected == shown == total
    assert count_text == f"{shown} of {total} students match"
    assert seen["cleared"] == total
    top, bottom, viewport, document_height = seen["panel_at_top"]
    assert document_height > viewport  # the roster is longer than the screen ...
    assert 0 <= top and bottom <= viewport  # ... and the mark panel is on screen all the same
    assert seen["selected"] == "1" and seen["after_mark"] == "0"
    assert seen["dialog_focus"] == "confirm-dialog-keep"
    absent_after = await test_db.fetchval("SELECT count(*) FROM attendance WHERE status = 'absent'")
    assert absent_after == absent_before  # Esc on the confirmation marked nobody absent
    assert seen["errors"] == [] and seen["overflow"] <= 0
