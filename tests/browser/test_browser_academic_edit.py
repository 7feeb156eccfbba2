"""In a real browser at desktop size (issue 15): the admin adds a room, finds it with the search box, edits
and deletes it (after a confirmation), adds a course choosing its coordinator by name, and is refused,
with the reason, when deleting a room that has held classes. Every outcome is shown beside the button
used, inside the viewport (its bounding box is checked against the viewport)."""
from __future__ import annotations

from support.browser_helpers import DESKTOP, axe_violations, chromium, pick, run_in_browser_thread


async def _in_viewport(page, locator) -> dict:
    """The element's box, after checking it lies wholly inside the viewport."""
    await locator.wait_for(state="visible", timeout=10_000)
    box = await locator.bounding_box()
    assert box is not None
    assert 0 <= box["y"] and box["y"] + box["height"] <= DESKTOP["height"], box
    assert 0 <= box["x"] and box["x"] + box["width"] <= DESKTOP["width"], box
    return box


async def test_admin_adds_edits_and_deletes_a_room_with_feedback_in_view(hub, hub_campus, test_db, tmp_path):
    held_room = hub_campus.sessions[0].room_id
    held_name = await test_db.fetchval("SELECT name FROM rooms WHERE id = $1", held_room)
    teacher = await test_db.fetchrow(
        "SELECT id, username, display_name FROM users WHERE role = 'faculty' ORDER BY username LIMIT 1")
    base = f"http://127.0.0.1:{hub.web_port}"
    seen: dict = {}

    async def script() -> None:
        async with chromium() as browser:
            page = await browser.new_page()
            await page.set_viewport_size(DESKTOP)
            await page.goto(f"{base}/login")
            await page.fill("#username", "admin")
            await page.fill("#password", "campushub")
            await page.click("#login-submit")
            await page.wait_for_url(lambda url: "/login" not in url)
            await page.goto(f"{base}/admin/academic")
            await page.locator(".faculty-select option[value]:not([value=''])").first.wait_for(state="attached", timeout=10_000)
            await page.locator(f'#rooms-body tr[data-room-id="{held_room}"]').wait_for(state="attached")

            # Add.
            form = page.locator("#room-form")
            await form.locator("input[name=name]").fill("Studio Q")
            await form.locator("input[name=building]").fill("West")
            await form.locator("input[name=capacity]").fill("24")
            await form.locator("button[type=submit]").click()
            added = form.locator(".feedback-success", has_text="Room Studio Q added.")
            await _in_viewport(page, added)

            # Find it with the search box, edit it.
            await page.fill("#rooms-filter", "studio")
            found = page.locator("#rooms-body tr:not([hidden])")
            seen["found"] = str(await found.count())
            await found.first.get_by_role("button", name="Edit").click()
            seen["editing_label"] = await form.locator("button[type=submit]").inner_text()
            await form.locator("input[name=name]").fill("Studio R")
            await form.locator("button[type=submit]").click()
            saved = form.locator(".feedback-success", has_text="Room Studio R saved.")
            await _in_viewport(page, saved)
            seen["after_edit_label"] = await form.locator("button[type=submit]").inner_text()

            # Delete it: a confirmation first, then the outcome just below the table.
            await page.fill("#rooms-filter", "studio r")
            await page.locator("#rooms-body tr:not([hidden])").first.get_by_role("button", name="Delete").click()
            dialog = page.locator("#confirm-dialog")
            await dialog.wait_for(state="visible")
            seen["confirm"] = await dialog.locator("#confirm-dialog-text").inner_text()
            seen["confirm_class"] = await dialog.locator("#confirm-dialog-confirm").get_attribute("class") or ""
            await dialog.locator("#confirm-dialog-confirm").click()
            deleted = page.locator("#rooms-table + .feedback-success", has_text="Room Studio R deleted.")
            await _in_viewport(page, deleted)

            # A room that has held classes: refused, saying why and what to do instead.
            await page.fill("#rooms-filter", "")
            refused_row = page.locator(f'#rooms-body tr[data-room-id="{held_room}"]')
            await refused_row.get_by_role("button", name="Delete").click()
            await page.locator("#confirm-dialog-confirm").click()
            refused = page.locator("#rooms-table + .feedback-error")
            await _in_viewport(page, refused)
            seen["refused"] = await refused.inner_text()

            # A course whose coordinator is chosen by name from the picker (no ids typed).
            course = page.locator("#course-form")
            await course.locator("input[name=code]").fill("PK-101")
            await course.locator("input[name=title]").fill("Picking")
            await pick(page, "#course-form select[name=faculty_id]", teacher["id"], typed=teacher["display_name"])
            await course.locator("button[type=submit]").click()
            await _in_viewport(page, course.locator(".feedback-success", has_text="Course PK-101 added."))
            await page.screenshot(path=str(tmp_path / "admin-academic-edit.png"))
            # With its feedback, Edit and Delete buttons and the picker, the page still passes WCAG 2.1 AA.
            seen["axe"] = await axe_violations(page)

    await run_in_browser_thread(script)
    assert seen["axe"] == [], seen["axe"]
    assert seen["found"] == "1"
    assert (seen["editing_label"], seen["after_edit_label"]) == ("Save room", "Add room")
    assert seen["confirm"] == "Delete room Studio R? This cannot be undone."
    assert "btn-danger" in seen["confirm_class"]
    assert f"Room {held_name} cannot be deleted" in seen["refused"] and "class session" in seen["refused"]
    assert await test_db.fetchval("SELECT count(*) FROM rooms WHERE name IN ('Studio Q', 'Studio R')") == 0
    assert await test_db.fetchval("SELECT count(*) FROM rooms WHERE id = $1", held_room) == 1
    assert await test_db.fetchval(
        "SELECT action FROM audit_log WHERE entity = 'room' ORDER BY id DESC LIMIT 1") == "deleted"
    assert await test_db.fetchval("SELECT faculty_id FROM courses WHERE code = 'PK-101'") == teacher["id"]
