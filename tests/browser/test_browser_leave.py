"""In real browsers: a student applies for leave on a phone (with a PDF), their teacher approves it from
the queues page, and the student sees it approved, with today's class excused."""
from __future__ import annotations

from support.browser_helpers import chromium, run_in_browser_thread
from support.hub_helpers import session_with_device

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


async def test_student_leave_flow(hub, hub_campus, test_db, tmp_path):
    session, _ = session_with_device(hub_campus)
    # stu-0001 carries the demo requests; take a classmate without any.
    student_id = next(s for s in reversed(session.enrolled) if s != "stu-0001")
    student = await test_db.fetchval("SELECT username FROM users WHERE id = $1", student_id)
    faculty = await test_db.fetchval(
        "SELECT u.username FROM courses c JOIN users u ON u.id = c.faculty_id WHERE c.id = $1", session.course_id)
    today = session.starts_at.date().isoformat()
    base = f"http://127.0.0.1:{hub.web_port}"

    async def login(page, username: str) -> None:
        await page.goto(f"{base}/login")
        await page.fill("#username", username)
        await page.fill("#password", "campushub")
        await page.click("#login-submit")
        await page.wait_for_url(lambda url: "/login" not in url)

    async def script() -> tuple[str, str]:
        async with chromium(phone=True) as phone, chromium() as desk:
            mobile = await phone.new_page()
            await login(mobile, student)
            await mobile.goto(f"{base}/student/leave")
            await mobile.locator("#leave-list li").first.wait_for()
            await mobile.fill("#leave-starts", today)
            await mobile.fill("#leave-ends", today)
            await mobile.fill("#leave-reason", "Dentist appointment")
            await mobile.set_input_files("#leave-document", files=[
                {"name": "appointment.pdf", "mimeType": "application/pdf", "buffer": PDF}])
            await mobile.click("#leave-submit")
            await mobile.locator("#leave-done:not([hidden])").wait_for(timeout=10_000)
            item = mobile.locator('#leave-list li[data-status="applied"]')
            await item.wait_for(timeout=5_000)
            assert "appointment.pdf" in await item.inner_text()
            # The phone layout never scrolls sideways.
            assert await mobile.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

            queues = await desk.new_page()
            await login(queues, faculty)
            await queues.goto(f"{base}/faculty/queues")
            pending = queues.locator("#leave-queue li.leave-item", has_text="Dentist appointment")
            await pending.wait_for(timeout=10_000)
            await pending.locator("input.decision-note").fill("Fine, catch up on the notes.")
            await pending.locator("button.approve").click()
            await pending.wait_for(state="detached", timeout=10_000)

            await mobile.reload()
            approved = mobile.locator('#leave-list li[data-status="approved"]')
            await approved.wait_for(timeout=10_000)
            await mobile.screenshot(path=str(tmp_path / "leave.png"), full_page=True)
            return await approved.inner_text(), await mobile.locator("#leave-list").inner_text()

    approved_text, _ = await run_in_browser_thread(script)
    # Every class of the student's that day is excused (the demo seed gives a room's students both its
    # courses, so there may be more than this session), and the page says how many.
    excused = await test_db.fetchval("SELECT count(*) FROM attendance WHERE student_id = $1 AND source = 'leave'"
                                     " AND status = 'excused'", student_id)
    assert excused >= 1
    assert f"{excused} class(es) excused" in approved_text and "catch up on the notes" in approved_text
    row = await test_db.fetchrow("SELECT status, source FROM attendance WHERE session_id = $1 AND student_id = $2",
                                 session.session_id, student_id)
    assert dict(row) == {"status": "excused", "source": "leave"}
    leave = await test_db.fetchrow("SELECT l.status, d.content_type FROM leave_applications l"
                                   " JOIN leave_documents d ON d.leave_id = l.id WHERE l.student_id = $1", student_id)
    assert dict(leave) == {"status": "approved", "content_type": "application/pdf"}
