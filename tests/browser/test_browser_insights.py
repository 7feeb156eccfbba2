"""In a real (phone-sized) browser: faculty approves a condonation on the report page; the student sees
their course turn "condoned" with a chart, then a notification arrive live and the badge clear."""
from __future__ import annotations

import threading

import trio
from support.browser_helpers import chromium, run_in_browser_thread

from hub.db.notifications import NewNotification, add_notifications, publish_notifications
from hub.db.seed import course_id
from hub.db.seed.insights import ensure_insights_demo


async def test_condonation_report_student_standing_and_live_notifications(hub, hub_campus, test_db, tmp_path):
    course = course_id(1)
    await ensure_insights_demo(test_db, course_id=course, now=hub_campus.sessions[0].starts_at)
    student_id = await test_db.fetchval(
        "SELECT student_id FROM enrolments WHERE course_id = $1 ORDER BY student_id LIMIT 1", course)
    student = await test_db.fetchval("SELECT username FROM users WHERE id = $1", student_id)
    faculty = await test_db.fetchval(
        "SELECT u.username FROM courses c JOIN users u ON u.id = c.faculty_id WHERE c.id = $1", course)
    base = f"http://127.0.0.1:{hub.web_port}"
    ready, published = threading.Event(), threading.Event()

    async def browse() -> dict:
        async with chromium(phone=True) as browser:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))

            async def login(username: str) -> None:
                await page.goto(f"{base}/login")
                await page.fill("#username", username)
                await page.fill("#password", "campushub")
                await page.click("#login-submit")
                await page.wait_for_load_state()

            await login(faculty)
            await page.goto(f"{base}/faculty/reports?course_id={course}")
            await page.locator("#course-chart path.chart-line").wait_for(timeout=10_000)
            application = page.locator("#condonations li.application").first
            await application.locator('button[data-decision="approved"]').click()
            await application.locator(".decided").wait_for(timeout=5_000)
            decided = await application.locator(".decided").text_content()
            await page.screenshot(path=str(tmp_path / "reports.png"), full_page=True)
            await page.locator("#logout").click()  # the nav's logout form posts to /logout
            await page.wait_for_url(f"{base}/login")

            await login(student)
            await page.goto(f"{base}/student")
            card = page.locator(f'#standings article[data-course-id="{course}"]')
            await card.locator("svg.chart path.chart-line").wait_for(timeout=10_000)
            eligibility = await card.locator('[data-field="eligibility"]').text_content()
            percentage = await card.locator('[data-field="percentage"]').text_content()
            overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            await page.screenshot(path=str(tmp_path / "student.png"), full_page=True)

            await page.goto(f"{base}/notifications")
            await page.locator('#live-status[data-state="live"]').wait_for(timeout=10_000)
            badge_before = int(await page.locator("#unread-badge").get_attribute("data-unread"))
            ready.set()
            assert published.wait(15)
            await page.locator('li.notification:has-text("Pushed live")').wait_for(timeout=2_000)
            badge_live = int(await page.locator("#unread-badge").get_attribute("data-unread"))
            await page.click("#read-all")
            await page.locator("#unread-badge").wait_for(state="hidden", timeout=5_000)
            return {"decided": decided, "eligibility": eligibility, "percentage": percentage,
                    "overflow": overflow, "badge_before": badge_before, "badge_live": badge_live,
                    "errors": errors}

    result: list[dict] = []
    async with trio.open_nursery() as nursery:
        async def run() -> None:
            try:
                result.append(await run_in_browser_thread(browse))
            finally:
                ready.set()

        nursery.start_soon(run)
        assert await trio.to_thread.run_sync(ready.wait, 60), "the notification page never came up"
        rows = await test_db.run(lambda conn: add_notifications(conn, [NewNotification(
            student_id, "leave_decided", "Pushed live", "Your leave was approved.", link="/student")]),
            transaction=True)
        publish_notifications(hub.bus, rows)
        published.set()
    assert result, "the browser script failed"
    seen = result[0]
    assert seen["decided"] == "approved"
    assert (seen["eligibility"], seen["percentage"]) == ("Eligible (condoned)", "73.33%")
    assert seen["overflow"] <= 0, "the student page scrolls sideways on a phone"
    assert seen["badge_before"] >= 1 and seen["badge_live"] == seen["badge_before"] + 1
    assert not seen["errors"], seen["errors"]
