"""In a real browser, two of issue 15's wrong numbers (regression tests):

- the faculty queue showed a correction as "present → present" (the record *now*) where the student
  saw "no record → present" (the record when asked): both now show the record when asked, and what
  it says now when that differs;
- the student's term chart started at the first session, before the term: its first point is now
  the term's start.
"""
from __future__ import annotations

from datetime import datetime, time

from support.browser_helpers import chromium, run_in_browser_thread
from support.hub_helpers import session_with_device

from hub.db.attendance import AttendanceChange, apply_attendance_changes
from hub.db.insights import course_term, standings
from hub.db.seed import course_id
from hub.db.seed.insights import ensure_insights_demo
from hub.domain.timetable import local_instant, zone


async def test_correction_before_state_and_term_chart_start(hub, hub_campus, test_db, tmp_path):
    session, _ = session_with_device(hub_campus)
    # stu-0001 carries the demo requests; take a classmate without a record in the running session.
    student_id = next(s for s in reversed(session.enrolled) if s != "stu-0001")
    student = await test_db.fetchval("SELECT username FROM users WHERE id = $1", student_id)
    faculty = await test_db.fetchval(
        "SELECT u.username FROM courses c JOIN users u ON u.id = c.faculty_id WHERE c.id = $1", session.course_id)
    assert await test_db.fetchval("SELECT count(*) FROM attendance WHERE session_id = $1 AND student_id = $2",
                                  session.session_id, student_id) == 0

    chart_course = course_id(1)
    await ensure_insights_demo(test_db, course_id=chart_course, now=session.starts_at)
    charted = (await standings(test_db, session.starts_at, course_id=chart_course))[0]
    chart_student = await test_db.fetchval("SELECT username FROM users WHERE id = $1", charted.student_id)
    term = await course_term(test_db, chart_course, charted.section_id)
    assert term is not None
    term_starts = local_instant(term.starts_on, time(0), zone(term.timezone))
    base = f"http://127.0.0.1:{hub.web_port}"

    async def login(page, username: str) -> None:
        await page.goto(f"{base}/login")
        await page.fill("#username", username)
        await page.fill("#password", "campushub")
        await page.click("#login-submit")
        await page.wait_for_url(lambda url: "/login" not in url)

    async def ask(page) -> int:
        """The student asks, through the API the page uses, to be marked present in the running class."""
        await page.goto(f"{base}/student/corrections")
        return await page.evaluate(
            """async (sessionId) => {
                const r = await fetch("/api/v1/corrections", {method: "POST", credentials: "same-origin",
                    headers: {"Content-Type": "application/json", "Accept": "application/json"},
                    body: JSON.stringify({session_id: sessionId, requested_status: "present",
                                          reason: "The scanner did not read my code."})});
                if (r.status !== 201) { throw new Error("correction refused: " + r.status); }
                return (await r.json()).id;
            }""", session.session_id)

    async def change_text(page, path: str, item: str) -> str:
        await page.goto(f"{base}{path}")
        entry = page.locator(f'{item}[data-correction-id="{correction_id}"] .head')
        await entry.wait_for(timeout=10_000)
        return (await entry.text_content() or "").strip()

    async def as_student() -> int:
        async with chromium(phone=True) as phone:
            page = await phone.new_page()
            await login(page, student)
            return await ask(page)

    correction_id = await run_in_browser_thread(as_student)

    # Meanwhile the record changes (the faculty marks the student present): the request keeps its
    # before state, and both views say what the record says now.
    await test_db.run(lambda conn: apply_attendance_changes(conn, [AttendanceChange(
        session.session_id, student_id, "present", "manual", session.starts_at)],
        actor="test", reason="marked present by the teacher"), transaction=True)

    async def browse() -> dict:
        async with chromium(phone=True) as phone, chromium() as desk:
            mobile, queues = await phone.new_page(), await desk.new_page()
            await login(mobile, student)
            seen_by_student = await change_text(mobile, "/student/corrections", "#correction-list li")
            await login(queues, faculty)
            seen_by_faculty = await change_text(queues, "/faculty/queues", "#correction-queue li")
            await queues.screenshot(path=str(tmp_path / "queues.png"), full_page=True)

            await mobile.locator("#logout").click()
            await mobile.wait_for_url(f"{base}/login")
            await login(mobile, chart_student)
            await mobile.goto(f"{base}/student")
            card = mobile.locator(f'#standings article[data-course-id="{chart_course}"]')
            await card.locator("svg.chart path.chart-line").wait_for(timeout=10_000)
            start_label = card.locator("svg.chart text.chart-start")
            chart_starts = await start_label.get_attribute("data-t") if await start_label.count() else None
            await mobile.screenshot(path=str(tmp_path / "student.png"), full_page=True)
            return {"student": seen_by_student, "faculty": seen_by_faculty, "chart_starts": chart_starts}

    seen = await run_in_browser_thread(browse)
    for view in ("student", "faculty"):
        assert "no record → present (now present)" in seen[view], seen
        assert "present → present" not in seen[view], seen
    assert seen["chart_starts"] is not None
    assert datetime.fromisoformat(seen["chart_starts"]) == term_starts
