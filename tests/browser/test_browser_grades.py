"""In real browsers: a student sees nothing of a course's marks until their teacher releases them from the
grade sheet (with a confirmation); then, on a phone, the student sees the grade and tries the what-if
calculator, whose answer follows what they type."""
from __future__ import annotations

import uuid

from support.browser_helpers import chromium, log_in, run_in_browser_thread

from hub.db.seed import DEMO_PASSWORD
from hub.db.seed.academic import TERM_ID


async def test_release_then_student_sees_grade_and_what_if(hub, hub_campus, test_db, tmp_path):
    # A course of its own (so no other test's demo course is released), taught by the demo faculty,
    # with one demo student: a 40% quiz marked 9/10, a 60% exam not marked yet.
    sfx = uuid.uuid4().hex[:8]
    course, section = f"gr-{sfx}", f"gr-{sfx}-A"
    faculty_id = await test_db.fetchval("SELECT id FROM users WHERE role = 'faculty' ORDER BY id LIMIT 1")
    student_id = await test_db.fetchval("SELECT id FROM students ORDER BY id LIMIT 1")
    faculty, student = [await test_db.fetchval("SELECT username FROM users WHERE id = $1", u)
                        for u in (faculty_id, student_id)]

    async def work(conn) -> int:
        await conn.execute("INSERT INTO courses (id, code, title, faculty_id, credits) VALUES ($1, $2, 'Grading demo', $3, 4)",
                           course, f"GR-{sfx}", faculty_id)
        await conn.execute("INSERT INTO sections (id, course_id, term_id, name) VALUES ($1, $2, $3, 'A')",
                           section, course, TERM_ID)
        await conn.execute("INSERT INTO enrolments (course_id, student_id, section_id) VALUES ($1, $2, $3)",
                           course, student_id, section)
        quiz = await conn.fetchval(
            "INSERT INTO assessments (course_id, term_id, kind, title, max_marks, weight) VALUES"
            " ($1, $2, 'quiz', 'Quiz A', 10, 40) RETURNING id", course, TERM_ID)
        await conn.execute(
            "INSERT INTO assessments (course_id, term_id, kind, title, max_marks, weight) VALUES"
            " ($1, $2, 'exam', 'Exam A', 60, 60)", course, TERM_ID)
        await conn.execute("INSERT INTO assessment_marks (assessment_id, student_id, status, raw_marks, marks)"
                           " VALUES ($1, $2, 'graded', 9, 9)", quiz, student_id)
        return quiz

    await test_db.run(work, transaction=True)
    base = f"http://127.0.0.1:{hub.web_port}"
    card = f'article.grade-course[data-course-id="{course}"]'

    async def script() -> dict[str, str]:
        seen: dict[str, str] = {}
        async with chromium(phone=True) as phone, chromium() as desk:
            mobile = await phone.new_page()
            await log_in(mobile, base, student, DEMO_PASSWORD)
            await mobile.goto(f"{base}/student/grades")
            seen["before"] = await mobile.locator(card).inner_text()

            sheet = await desk.new_page()
            await log_in(sheet, base, faculty, DEMO_PASSWORD)
            await sheet.goto(f"{base}/faculty/grades?course_id={course}&term_id={TERM_ID}")
            await sheet.locator("#grade-distribution .chart-bar").first.wait_for(timeout=10_000)
            await sheet.click("#release-button")
            await sheet.locator("#confirm-dialog-confirm").click()
            await sheet.locator("#release-box .feedback").wait_for(timeout=10_000)
            seen["released"] = await sheet.locator("#release-state").inner_text()

            await mobile.reload()
            seen["after"] = await mobile.locator(card).inner_text()
            await mobile.select_option("#what-if-term", TERM_ID)
            hope = mobile.locator(f'fieldset.what-if-course[data-course-id="{course}"] input[data-assessment-id]')
            await hope.fill("57")  # 40 x 0.9 + 60 x 57/60 = 93 -> A
            result = mobile.locator(f'.what-if-result[data-result-for="{course}"]')
            await result.filter(has_text="93.00%").wait_for(timeout=10_000)
            seen["what_if"] = await result.inner_text()
            await hope.fill("30")  # 36 + 30 = 66 -> C+
            await result.filter(has_text="66.00%").wait_for(timeout=10_000)
            seen["what_if_lower"] = await result.inner_text()
            assert await mobile.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            await mobile.screenshot(path=str(tmp_path / "grades.png"), full_page=True)
        return seen

    seen = await run_in_browser_thread(script)
    assert "Grades not released yet" in seen["before"] and "9 / 10" not in seen["before"]
    assert "1 student was notified" in seen["released"]
    # Released mid-term: the grade counts the unmarked exam as 0 (36%) and is provisional.
    assert "9 / 10" in seen["after"] and "36.00%" in seen["after"] and "Provisional" in seen["after"]
    assert seen["what_if"].startswith("Grade A (93.00%") and seen["what_if_lower"].startswith("Grade C+ (66.00%")
    assert "left out" not in seen["what_if"]
    assert await test_db.fetchval("SELECT count(*) FROM notifications WHERE user_id = $1 AND kind = 'grades_released'"
                                  " AND data->>'course_id' = $2", student_id, course) == 1
