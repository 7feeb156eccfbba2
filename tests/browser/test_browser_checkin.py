"""In real browsers: faculty marks on the live roster; a logged-out phone checks in from the projector's QR."""
from __future__ import annotations

from support.browser_helpers import chromium, run_in_browser_thread
from support.hub_helpers import session_with_device, student

from hub.db.checkin import display_session


async def test_roster_manual_mark_and_display_checkin_from_a_logged_out_phone(hub, hub_campus, test_db, tmp_path):
    session, _ = session_with_device(hub_campus)
    marked, scanner = (student(hub_campus, s) for s in session.enrolled[:2])
    faculty = await test_db.fetchval(
        "SELECT u.username FROM courses c JOIN users u ON u.id = c.faculty_id WHERE c.id = $1", session.course_id)
    scanner_username = await test_db.fetchval("SELECT username FROM users WHERE id = $1", scanner.student_id)
    base = f"http://127.0.0.1:{hub.web_port}"

    async def script() -> tuple[str, dict]:
        async with chromium() as desk, chromium(phone=True) as phone:
            roster = await desk.new_page()
            await roster.goto(f"{base}/login")
            await roster.fill("#username", faculty)
            await roster.fill("#password", "campushub")
            await roster.click("#login-submit")
            await roster.wait_for_url(f"{base}/faculty**")
            await roster.goto(f"{base}/faculty/sessions/{session.session_id}")
            await roster.locator('#live-status[data-state="live"]').wait_for(timeout=10_000)
            # Manual mark: select a row, press Excused; the live feed updates the row.
            await roster.locator(f'tr[data-student-id="{marked.student_id}"]').click()
            await roster.locator('button[data-mark="excused"]').click()
            await roster.locator(f'tr[data-student-id="{marked.student_id}"] .status.status-excused').wait_for(timeout=5_000)
            # The projector page shows the hub's current code; read the URL the QR holds from the API.
            display = await desk.new_page()
            await display.goto(f"{base}/faculty/sessions/{session.session_id}/display")
            await display.locator("#display-qr:not([hidden])").wait_for(timeout=5_000)
            code = await (await display.request.get(f"{base}/api/v1/sessions/{session.session_id}/display-code")).json()
            # A phone that is not logged in scans it: login, then back, checked in without rescanning.
            mobile = await phone.new_page()
            await mobile.goto(code["url"])
            await mobile.wait_for_url(f"{base}/login**")
            await mobile.fill("#username", scanner_username)
            await mobile.fill("#password", "campushub")
            await mobile.click("#login-submit")
            await mobile.locator('#checkin-result[data-state="ok"]').wait_for(timeout=10_000)
            text = await mobile.locator("#checkin-result").inner_text()
            await mobile.screenshot(path=str(tmp_path / "phone.png"))
            # ... and the faculty's roster sees it live.
            await roster.locator(f'tr[data-student-id="{scanner.student_id}"] .status.status-present').wait_for(timeout=5_000)
            return text, code

    text, shown = await run_in_browser_thread(script)
    assert text.startswith("Checked in: present")
    # The hub derived the code from the campus key; this test's own pool and key box derive the same one.
    ours = await display_session(test_db, session.session_id)
    assert ours is not None and shown["url"].endswith(f"/{shown['window']}/{ours.code(shown['window'])}")
    rows = {r["student_id"]: (r["status"], r["source"]) for r in await test_db.fetch(
        "SELECT student_id, status, source FROM attendance WHERE session_id = $1", session.session_id)}
    assert rows[marked.student_id] == ("excused", "manual")
    assert rows[scanner.student_id] == ("present", "display")
