"""In real browsers: a teacher enters a mark in the gradebook (in place, saved when they leave the box; the
running grade follows), and a student on a phone sees their exam timetable with their eligibility. Both
pages pass axe."""
from __future__ import annotations

from support.browser_helpers import axe_violations, chromium, log_in, run_in_browser_thread

from hub.db.seed import DEMO_PASSWORD


async def test_faculty_enters_a_mark_and_the_student_sees_their_exams(hub, hub_campus, test_db, tmp_path):
    # The demo seed's quiz of a course (hub/db/seed/assessments.py) and a student of its section.
    quiz = await test_db.fetchrow(
        "SELECT a.id, a.course_id, u.username AS faculty FROM assessments a JOIN courses c ON c.id = a.course_id"
        " JOIN users u ON u.id = c.faculty_id WHERE a.kind = 'quiz' AND a.title = 'Quiz 1' ORDER BY a.course_id LIMIT 1")
    student_id, student = await test_db.fetchrow(
        "SELECT e.student_id, u.username FROM enrolments e JOIN users u ON u.id = e.student_id"
        " JOIN exam_sittings x ON x.section_id = e.section_id"
        " WHERE e.course_id = $1 ORDER BY e.student_id LIMIT 1", quiz["course_id"])
    base = f"http://127.0.0.1:{hub.web_port}"
    cell = f'input.mark-input[data-assessment-id="{quiz["id"]}"][data-student-id="{student_id}"]'

    async def script() -> tuple[str, list, list, str]:
        async with chromium() as desk, chromium(phone=True) as phone:
            page = await desk.new_page()
            await log_in(page, base, quiz["faculty"], DEMO_PASSWORD)
            await page.goto(f"{base}/faculty/gradebook?course_id={quiz['course_id']}")
            before = await page.locator(f'td[data-running="{student_id}"]').inner_text()
            await page.fill(cell, "2")
            await page.keyboard.press("Tab")
            await page.locator(f"td:has({cell}) .feedback", has_text="Saved").wait_for(timeout=10_000)
            # The running grade is the server's, asked again after the save.
            await page.wait_for_function(
                "([sel, old]) => document.querySelector(sel).textContent.trim() !== old",
                arg=[f'td[data-running="{student_id}"]', before.strip()], timeout=10_000)
            desk_axe = await axe_violations(page)

            mobile = await phone.new_page()
            await log_in(mobile, base, student, DEMO_PASSWORD)
            await mobile.goto(f"{base}/student/exams")
            row = mobile.locator("#exam-timetable tbody tr").first
            await row.wait_for(timeout=10_000)
            await mobile.screenshot(path=str(tmp_path / "exams.png"), full_page=True)
            return await row.inner_text(), desk_axe, await axe_violations(mobile), before

    row_text, desk_axe, phone_axe, before = await run_in_browser_thread(script)
    assert not desk_axe and not phone_axe, (desk_axe, phone_axe)
    mark = await test_db.fetchrow("SELECT status, marks, graded_by FROM assessment_marks"
                                  " WHERE assessment_id = $1 AND student_id = $2", quiz["id"], student_id)
    assert (mark["status"], float(mark["marks"])) == ("graded", 2.0)
    assert await test_db.fetchval(
        "SELECT count(*) FROM audit_log WHERE entity = 'assessment_mark' AND entity_id = $1 AND after->>'marks' = '2.00'",
        f"{quiz['id']}/{student_id}") == 1
    # The exam entry: the final's sitting, with the student's attendance eligibility in words.
    assert "Final exam" in row_text
    assert any(word in row_text for word in ("Eligible", "Condonable", "Barred"))
