"""In real browsers: an admin restricts a room's check-in networks on the Academic page; a phone outside
them checks in from the projector's QR (counted), and the teacher's roster shows the flag in plain words."""
from __future__ import annotations

from support.browser_helpers import chromium, pick, run_in_browser_thread
from support.hub_helpers import session_with_device, student


async def _login(page, base: str, username: str) -> None:
    await page.goto(f"{base}/login")
    await page.fill("#username", username)
    await page.fill("#password", "campushub")
    await page.click("#login-submit")
    await page.wait_for_url(lambda url: "/login" not in url)


async def test_admin_restricts_a_room_and_an_outside_checkin_is_flagged_in_plain_words(hub, hub_campus, test_db):
    session, _ = session_with_device(hub_campus)
    scanner = student(hub_campus, session.enrolled[0])
    faculty = await test_db.fetchval(
        "SELECT u.username FROM courses c JOIN users u ON u.id = c.faculty_id WHERE c.id = $1", session.course_id)
    scanner_username = await test_db.fetchval("SELECT username FROM users WHERE id = $1", scanner.student_id)
    base = f"http://127.0.0.1:{hub.web_port}"
    seen: dict[str, str] = {}

    async def script() -> None:
        async with chromium() as desk, chromium(phone=True) as phone:
            admin = await desk.new_page()
            await _login(admin, base, "admin")
            await admin.goto(f"{base}/admin/academic")
            await admin.locator(f'#network-room option[value="{session.room_id}"]').wait_for(state="attached")
            await pick(admin, "#network-room", session.room_id)
            await admin.locator("#room-networks-effective", has_text="No restriction").wait_for(timeout=5_000)
            await admin.uncheck("#room-networks-form input[name=follow]")
            await admin.fill("#room-networks-form textarea[name=ranges]", "192.0.2.0/24\n2001:db8:5::/48")
            await admin.click("#room-networks-form button[type=submit]")
            await admin.locator("#room-networks-form .feedback-success",
                                has_text="Room check-in networks saved.").wait_for(timeout=5_000)
            seen["effective"] = await admin.locator("#room-networks-effective").inner_text()
            # A typo is refused with the reason, nothing saved.
            await admin.fill("#room-networks-form textarea[name=ranges]", "192.0.2.7/24")
            await admin.click("#room-networks-form button[type=submit]")
            await admin.locator("#room-networks-form .feedback-error").wait_for(timeout=5_000)
            seen["refused"] = await admin.locator("#room-networks-form .feedback-error").inner_text()

            roster = await desk.new_page()
            await _login(roster, base, faculty)
            await roster.goto(f"{base}/faculty/sessions/{session.session_id}")
            await roster.locator('#live-status[data-state="live"]').wait_for(timeout=10_000)
            code = await (await roster.request.get(f"{base}/api/v1/sessions/{session.session_id}/display-code")).json()
            # The phone is on 127.0.0.1: outside the room's ranges. Counted, and flagged.
            mobile = await phone.new_page()
            await _login(mobile, base, scanner_username)
            await mobile.goto(code["url"])
            await mobile.locator('#checkin-result[data-state="ok"]').wait_for(timeout=10_000)
            item = roster.locator(f'#flag-list li.flag[data-student-id="{scanner.student_id}"]')
            await item.wait_for(timeout=10_000)
            seen["flag"] = await item.inner_text()

    await run_in_browser_thread(script)
    assert seen["effective"] == "Applies to this room (its own setting): 192.0.2.0/24, 2001:db8:5::/48"
    assert "did you mean 192.0.2.0/24" in seen["refused"]
    assert "Checked in from outside the room's network" in seen["flag"] and "outside_network" not in seen["flag"]
    assert "127.0.0.0/24" in seen["flag"]
    assert await test_db.fetchval("SELECT status FROM attendance WHERE session_id = $1 AND student_id = $2",
                                  session.session_id, scanner.student_id) == "present"
