"""In a real browser: the faculty's open live roster gains a student enrolled meanwhile, and loses a
student deactivated meanwhile, without a reload (the session websocket's ``roster`` message)."""
from __future__ import annotations

import threading
from datetime import date, timedelta

import httpx
import trio
from support.browser_helpers import chromium, run_in_browser_thread
from support.hub_helpers import session_with_device


async def test_the_open_roster_gains_an_enrolled_student_and_drops_a_deactivated_one(
        hub, hub_campus, test_db, tmp_path):
    session, _ = session_with_device(hub_campus)
    leaver = session.enrolled[-1]
    newcomer = await test_db.fetchval(
        "SELECT s.id FROM students s WHERE NOT EXISTS (SELECT 1 FROM enrolments e"
        " WHERE e.student_id = s.id AND e.course_id = $1) ORDER BY s.id LIMIT 1", session.course_id)
    today = date.today()
    await test_db.execute("INSERT INTO terms (id, name, starts_on, ends_on) VALUES ('t-live', 'Live', $1, $2)",
                          today - timedelta(days=30), today + timedelta(days=30))
    await test_db.execute("INSERT INTO sections (id, course_id, term_id, name) VALUES ('sec-live', $1, 't-live', 'L')",
                          session.course_id)
    faculty = await test_db.fetchval(
        "SELECT u.username FROM courses c JOIN users u ON u.id = c.faculty_id WHERE c.id = $1", session.course_id)
    base = f"http://127.0.0.1:{hub.web_port}"
    ready, enrolled, deactivated = threading.Event(), threading.Event(), threading.Event()
    # The admin deactivates only once the page has shown the enrolment: otherwise both changes may
    # land before the count is read.
    enrolment_seen = threading.Event()

    async def faculty_watches_roster() -> tuple[str, str]:
        """Asyncio, in the browser thread: the enrolled count after each change."""
        async with chromium() as browser:
            page = await browser.new_page()
            await page.goto(f"{base}/login")
            await page.fill("#username", faculty)
            await page.fill("#password", "campushub")
            await page.click("#login-submit")
            await page.wait_for_url(f"{base}/faculty**")
            await page.goto(f"{base}/faculty/sessions/{session.session_id}")
            await page.locator(f'tr[data-student-id="{leaver}"]').wait_for()
            await page.locator('#live-status[data-state="live"]').wait_for(timeout=10_000)
            assert await page.locator(f'tr[data-student-id="{newcomer}"]').count() == 0
            ready.set()
            assert enrolled.wait(15)
            row = page.locator(f'tr[data-student-id="{newcomer}"]')
            await row.wait_for(timeout=2_000)
            assert await row.locator(".status").get_attribute("data-status") == "not-yet"
            after_enrolment = await page.locator("#count-enrolled").text_content() or ""
            enrolment_seen.set()
            assert deactivated.wait(15)
            await page.locator(f'tr[data-student-id="{leaver}"]').wait_for(state="detached", timeout=2_000)
            after_deactivation = await page.locator("#count-enrolled").text_content() or ""
            await page.screenshot(path=str(tmp_path / "roster-changes.png"))
            return after_enrolment, after_deactivation

    result: list[tuple[str, str]] = []
    async with httpx.AsyncClient(base_url=base) as http, trio.open_nursery() as nursery:
        token = await http.post("/api/v1/auth/login", json={"username": "admin", "password": "campushub"})
        http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

        async def browse() -> None:
            try:
                result.append(await run_in_browser_thread(faculty_watches_roster))
            finally:
                ready.set()  # a failed browser must not leave the test waiting
                enrolment_seen.set()
                enrolled.set()
                deactivated.set()

        nursery.start_soon(browse)
        assert await trio.to_thread.run_sync(ready.wait, 30), "the roster page never came up"
        response = await http.post("/api/v1/enrolments/import",
                                   json={"csv": f"student_id,section_id\n{newcomer},sec-live\n"})
        assert response.status_code == 200, response.text
        enrolled.set()
        assert await trio.to_thread.run_sync(enrolment_seen.wait, 30), "the roster never showed the enrolment"
        response = await http.post(f"/api/v1/users/{leaver}/deactivate", json={})
        assert response.status_code == 200, response.text
        deactivated.set()
    count = len(session.enrolled)
    assert result == [(str(count + 1), str(count))], result
