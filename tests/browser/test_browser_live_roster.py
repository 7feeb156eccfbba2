"""In a real browser: faculty logs in, opens the live session, and sees a student turn present."""
from __future__ import annotations

import threading
import time

import trio
from support.browser_helpers import chromium, run_in_browser_thread
from support.hub_helpers import AgentThread, agent_config, session_with_device, student

from schemas import issue_checkin_token


async def test_faculty_sees_student_turn_present_within_two_seconds(hub, hub_settings, hub_campus, test_db, tmp_path):
    session, device = session_with_device(hub_campus)
    enrolled = student(hub_campus, session.enrolled[0])
    faculty = await test_db.fetchval(
        "SELECT u.username FROM courses c JOIN users u ON u.id = c.faculty_id WHERE c.id = $1", session.course_id)
    base = f"http://127.0.0.1:{hub.web_port}"
    ready, published = threading.Event(), threading.Event()

    async def faculty_watches_roster() -> float:
        """Asyncio, in the browser thread: returns seconds from publish to 'present' on screen."""
        async with chromium(phone=True) as browser:
            page = await browser.new_page()
            await page.goto(f"{base}/login")
            await page.fill("#username", faculty)
            await page.fill("#password", "campushub")
            await page.click("#login-submit")
            await page.wait_for_url(f"{base}/faculty**")
            await page.goto(f"{base}/faculty/sessions/{session.session_id}")
            row = page.locator(f'tr[data-student-id="{enrolled.student_id}"]')
            await row.wait_for()
            assert "status-present" not in (await row.locator(".status").get_attribute("class") or "")
            await page.locator('#live-status[data-state="live"]').wait_for(timeout=10_000)
            ready.set()
            assert published.wait(15)
            started = time.monotonic()
            await row.locator(".status.status-present").wait_for(timeout=2_000)
            elapsed = time.monotonic() - started
            await page.screenshot(path=str(tmp_path / "roster.png"))
            return elapsed

    agent = AgentThread(agent_config(
        device, mqtt_url=hub_settings.mqtt_url, topic_prefix=hub_settings.topic_prefix,
        outbox=tmp_path / "outbox.sqlite")).start()
    result: list[float] = []
    try:
        async with trio.open_nursery() as nursery:
            async def browse() -> None:
                try:
                    result.append(await run_in_browser_thread(faculty_watches_roster))
                finally:
                    ready.set()  # a failed browser must not leave the test waiting

            nursery.start_soon(browse)
            assert await trio.to_thread.run_sync(ready.wait, 30), "the roster page never came up"
            await trio.to_thread.run_sync(
                agent.submit_qr, issue_checkin_token(enrolled.student_id, enrolled.token_secret, time.time()))
            published.set()
    finally:
        await trio.to_thread.run_sync(agent.stop)
    assert result and result[0] < 2.0, result
