"""In a real (phone-sized) browser: faculty open the support list of their course and see the student
who has missed half the classes at high risk, with the reason in plain words; the student sees their
own level with supportive wording."""
from __future__ import annotations

import trio
from support.browser_helpers import chromium, log_in, run_in_browser_thread

from hub.db.seed import DEMO_PASSWORD, course_id
from hub.db.seed.insights import ensure_insights_demo
from hub.services.risk import RiskChanged


async def test_faculty_sees_an_at_risk_student_with_reasons(hub, hub_campus, test_db, tmp_path):
    course = course_id(1)
    await ensure_insights_demo(test_db, course_id=course, now=hub_campus.sessions[0].starts_at)
    # The insights demo's third student (by id) attended 6 of 12 classes.
    student_id = (await test_db.fetch(
        "SELECT student_id FROM enrolments WHERE course_id = $1 ORDER BY student_id LIMIT 3", course))[2][0]
    student = await test_db.fetchval("SELECT username FROM users WHERE id = $1", student_id)
    faculty = await test_db.fetchval(
        "SELECT u.username FROM courses c JOIN users u ON u.id = c.faculty_id WHERE c.id = $1", course)
    # The history was written straight to the database: tell the actor, as the web does after a change.
    hub.root.lookup("risk").try_tell(RiskChanged(course))
    with trio.fail_after(10):
        while await test_db.fetchval("SELECT level FROM risk_predictions WHERE student_id = $1 AND course_id = $2",
                                     student_id, course) != "high":
            await trio.sleep(0.05)
    base = f"http://127.0.0.1:{hub.web_port}"

    async def browse() -> dict:
        async with chromium(phone=True) as browser:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await log_in(page, base, faculty, DEMO_PASSWORD)
            await page.click("#menu-toggle")  # phone size: the nav is behind the menu button
            await page.click("#nav-risk")
            await page.wait_for_load_state()
            row = page.locator(f'#risk-table tr[data-student="{student_id}"]')
            await row.wait_for(timeout=10_000)
            level = await row.get_attribute("data-level")
            reasons = await row.locator(".risk-reasons li").all_text_contents()
            first = await page.locator("#risk-table tbody tr").first.get_attribute("data-level")
            await page.screenshot(path=str(tmp_path / "faculty-risk.png"), full_page=True)
            await page.locator("#logout").click()
            await page.wait_for_url(f"{base}/login")
            await log_in(page, base, student, DEMO_PASSWORD)
            await page.goto(f"{base}/student/risk")
            card = page.locator(f'#my-risk li[data-course="{course}"]')
            await card.wait_for(timeout=10_000)
            own = await card.text_content()
            overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            await page.screenshot(path=str(tmp_path / "student-risk.png"), full_page=True)
            return {"level": level, "reasons": reasons, "first": first, "own": own, "overflow": overflow,
                    "errors": errors}

    seen = await run_in_browser_thread(browse)
    assert seen["level"] == "high" and seen["first"] == "high"
    assert any(r.startswith("Attended 50 % of 12 classes so far") for r in seen["reasons"]), seen["reasons"]
    assert "What we noticed" in seen["own"] and "Attended 50 %" in seen["own"]
    assert seen["overflow"] <= 0 and not seen["errors"], seen
