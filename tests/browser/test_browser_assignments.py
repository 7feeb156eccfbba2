"""In real browsers: a student submits an assignment on a phone and gets a receipt; their teacher grades it
in the queue; the student sees "returned" and the feedback but no marks, and the marks once the course's
grades are released."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from support.browser_helpers import chromium, log_in, run_in_browser_thread
from support.hub_helpers import session_with_device

from hub.db.assignments import AssignmentFields, create_assignment, publish
from hub.db.seed.academic import TERM_ID

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


async def test_student_submits_and_sees_grade_after_release(hub, hub_campus, test_db, tmp_path):
    session, _ = session_with_device(hub_campus)
    student_id = next(s for s in reversed(session.enrolled) if s != "stu-0001")
    student = await test_db.fetchval("SELECT username FROM users WHERE id = $1", student_id)
    faculty_id = await test_db.fetchval("SELECT faculty_id FROM courses WHERE id = $1", session.course_id)
    faculty = await test_db.fetchval("SELECT username FROM users WHERE id = $1", faculty_id)
    now = datetime.now(timezone.utc)
    title = f"Browser essay {now:%H%M%S%f}"
    made = await create_assignment(test_db, course_id=session.course_id, term_id=TERM_ID, section_id=None,
                                   fields=AssignmentFields(
                                       title=title, max_marks=Decimal(20), weight=Decimal(0), instructions="Write.",
                                       opens_at=None, due_at=now + timedelta(days=2), cut_off_at=None,
                                       grace_minutes=0, penalty_percent=Decimal(10), penalty_period="day",
                                       penalty_cap_percent=Decimal(50), pass_percent=None, max_attempts=2),
                                   created_by=faculty_id)
    await publish(test_db, made.id, now)
    base = f"http://127.0.0.1:{hub.web_port}"

    async def open_card(page):
        await log_in(page, base, student, "campushub")
        await page.goto(f"{base}/student/assignments")
        card = page.locator(".assignment-card", has_text=title)
        await card.wait_for(timeout=10_000)
        return card

    async def submit_and_grade() -> tuple[str, str]:
        async with chromium(phone=True) as phone, chromium() as desk:
            mobile = await phone.new_page()
            card = await open_card(mobile)
            await card.locator("textarea").fill("My essay, with a figure attached.")
            await card.locator("input[type=file]").set_input_files(files=[
                {"name": "figure.pdf", "mimeType": "application/pdf", "buffer": PDF}])
            await card.locator("button.submit-work").click()
            receipt = card.locator(".feedback-success")
            await receipt.wait_for(timeout=10_000)
            receipt_text = await receipt.inner_text()
            assert await mobile.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

            queue = await desk.new_page()
            await log_in(queue, base, faculty, "campushub")
            await queue.goto(f"{base}/faculty/assignments")
            row = queue.locator("#assignment-table tr", has_text=title)
            await row.wait_for(timeout=10_000)
            await row.locator("button.open-queue").click()
            mine = queue.locator(f'#queue-table tr[data-student-id="{student_id}"]')
            await mine.wait_for(timeout=10_000)
            assert "figure.pdf" in await mine.inner_text()
            await mine.locator("input.marks-input").fill("17.5")
            await mine.locator("textarea").fill("A clear argument; cite your sources.")
            await mine.locator("button.grade-button").click()
            await mine.locator(".feedback-success").wait_for(timeout=10_000)

            await mobile.reload()
            card = mobile.locator(".assignment-card", has_text=title)
            await card.locator(".mark").wait_for(timeout=10_000)
            return receipt_text, await card.inner_text()

    async def after_release() -> str:
        async with chromium(phone=True) as phone:
            mobile = await phone.new_page()
            card = await open_card(mobile)
            await card.locator(".mark .marks", has_text="17.5 / 20 marks").wait_for(timeout=10_000)
            await mobile.screenshot(path=str(tmp_path / "assignments.png"), full_page=True)
            return await card.inner_text()

    receipt_text, before = await run_in_browser_thread(submit_and_grade)
    await test_db.execute("INSERT INTO grade_releases (course_id, term_id, released_by) VALUES ($1, $2, $3)",
                          session.course_id, TERM_ID, faculty_id)
    try:
        after = await run_in_browser_thread(after_release)
    finally:  # other tests expect the demo term unreleased
        await test_db.execute("DELETE FROM grade_releases WHERE course_id = $1 AND term_id = $2",
                              session.course_id, TERM_ID)
    stored = await test_db.fetchrow("SELECT sha256, status FROM assignment_submissions WHERE assessment_id = $1"
                                    " AND student_id = $2", made.id, student_id)
    assert stored["sha256"] in receipt_text and stored["status"] == "returned"
    assert "Status: returned" in before and "cite your sources" in before and "17.5" not in before
    assert "17.5 / 20 marks" in after  # decimals as people write them (assignments.js num)
