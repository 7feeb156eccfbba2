"""In a real browser: a student reads the notice, gives biometric consent, sees the terminal ops enrolled
them on, and withdraws; the page then shows the terminal's removal pending and the give form again."""
from __future__ import annotations

import os

import httpx
from support.browser_helpers import chromium, open_menu, pick, run_in_browser_thread

from hub.db.seed import DEMO_PASSWORD
from hub.domain.biometric_consent import CURRENT_NOTICE_VERSION


async def test_student_gives_and_withdraws_biometric_consent(hub, hub_campus, test_db, tmp_path):
    student = hub_campus.students[1]
    base = f"http://127.0.0.1:{hub.web_port}"
    room_id = hub_campus.sessions[0].room_id

    async with httpx.AsyncClient(base_url=base, timeout=10) as admin:
        login = await admin.post("/api/v1/auth/login", json={"username": "admin", "password": DEMO_PASSWORD})
        admin.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        registered = await admin.post("/api/v1/devices", json={
            "device_id": "fp-consent-browser", "room_id": room_id, "kind": "fingerprint", "alg": "hmac-sha256"})
        assert registered.status_code == 201, registered.text

        admin_headers = dict(admin.headers)

        async def enrol() -> int:
            """Ops enrol the student (runs on the browser thread's asyncio loop: its own client)."""
            async with httpx.AsyncClient(base_url=base, timeout=10, headers=admin_headers) as ops:
                response = await ops.post(f"/api/v1/devices/fp-consent-browser/enrolments/{student.student_id}",
                                          json={"page": 31})
                return response.status_code

        async def script() -> dict[str, str]:
            seen: dict[str, str] = {}
            async with chromium(phone=True) as phone:
                page = await phone.new_page()
                await page.goto(f"{base}/login")
                await page.fill("#username", student.username)
                await page.fill("#password", DEMO_PASSWORD)
                await page.click("#login-submit")
                await page.wait_for_url(lambda url: "/login" not in url)
                await open_menu(page)  # the nav folds behind the Menu button on a phone
                await page.click("a[href='/student/privacy']")
                await page.locator('#biometric-consent[data-state="none"]').wait_for(timeout=10_000)
                seen["notice"] = await page.locator("#consent-notice").inner_text()
                # Not ticked: the page says why and sends nothing.
                await page.click("#consent-give")
                await page.locator("#consent-error:not([hidden])").wait_for(timeout=5_000)
                seen["unticked"] = await page.locator("#consent-error").inner_text()
                await page.check("#consent-read")
                await page.click("#consent-give")
                await page.locator('#biometric-consent[data-state="given"]').wait_for(timeout=10_000)
                seen["given"] = await page.locator("#consent-status").inner_text()
                seen["enrol"] = str(await enrol())
                await page.reload()
                await page.locator('#consent-terminals tr[data-state="pending"]').wait_for(timeout=10_000)
                await page.fill("#consent-reason", "I prefer the QR code")
                await page.click("#consent-withdraw")
                await page.locator('#biometric-consent[data-state="none"]').wait_for(timeout=10_000)
                row = page.locator('#consent-terminals tr[data-device-id="fp-consent-browser"]')
                seen["after"] = await row.get_attribute("data-state") or ""
                seen["history"] = await page.locator("#consent-history").inner_text()
                assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
                await page.screenshot(path=str(tmp_path / "privacy.png"), full_page=True)
            return seen

        seen = await run_in_browser_thread(script)

    assert "Fingerprint check-in is optional" in seen["notice"]
    assert "Tick the box" in seen["unticked"]
    assert f"notice {CURRENT_NOTICE_VERSION}" in seen["given"]
    assert seen["enrol"] == "202"
    assert seen["after"] == "removal_pending"
    assert "withdrawn" in seen["history"]
    row = await test_db.fetchrow("SELECT given_by, withdrawn_by, withdrawal_reason FROM biometric_consents"
                                 " WHERE student_id = $1", student.student_id)
    assert dict(row) == {"given_by": student.student_id, "withdrawn_by": student.student_id,
                         "withdrawal_reason": "I prefer the QR code"}


async def test_admin_records_paper_consent_enrols_with_a_template_and_removes_on_the_device_page(
        hub, hub_campus, test_db, tmp_path):
    student = hub_campus.students[2]
    base = f"http://127.0.0.1:{hub.web_port}"
    template = tmp_path / "finger.tpl"
    template.write_bytes(os.urandom(200))
    async with httpx.AsyncClient(base_url=base, timeout=10) as admin:
        login = await admin.post("/api/v1/auth/login", json={"username": "admin", "password": DEMO_PASSWORD})
        admin.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        registered = await admin.post("/api/v1/devices", json={
            "device_id": "fp-ops-browser", "room_id": hub_campus.sessions[0].room_id, "kind": "fingerprint",
            "alg": "hmac-sha256"})
        assert registered.status_code == 201, registered.text

    async def script() -> dict[str, str]:
        seen: dict[str, str] = {}
        async with chromium() as desk:
            page = await desk.new_page()
            await page.goto(f"{base}/login")
            await page.fill("#username", "admin")
            await page.fill("#password", DEMO_PASSWORD)
            await page.click("#login-submit")
            await page.wait_for_url(lambda url: "/login" not in url)
            await page.goto(f"{base}/ops/devices/fp-ops-browser")
            await pick(page, "#enrol-student", student.student_id)
            await page.fill("#enrol-page", "42")
            # No consent yet: refused, and the page says why.
            await page.click("#enrol-submit")
            await page.locator("#enrol-error:not([hidden])").wait_for(timeout=10_000)
            seen["refused"] = await page.locator("#enrol-error").inner_text()
            await page.click("#enrol-paper-consent")
            await page.locator("#enrol-done:not([hidden])").wait_for(timeout=10_000)
            await page.set_input_files("#enrol-template", str(template))
            await page.click("#enrol-submit")
            row = page.locator(f'#device-enrolments tr[data-student-id="{student.student_id}"]')
            await row.wait_for(timeout=10_000)
            seen["enrolled"] = await row.get_attribute("data-state") or ""
            await row.locator("button.enrol-remove").click()
            await page.locator(f'#device-enrolments tr[data-student-id="{student.student_id}"]'
                               '[data-state="removal_pending"]').wait_for(timeout=10_000)
            seen["removed"] = "removal_pending"
        return seen

    seen = await run_in_browser_thread(script)
    assert "consent" in seen["refused"]
    assert seen["enrolled"] == "pending"  # nobody listens: the commands wait for an ack
    names = [r["name"] for r in await test_db.fetch(
        "SELECT name FROM device_commands WHERE device_id = 'fp-ops-browser' ORDER BY seq")]
    assert names == ["template_sync", "roster_sync", "template_sync", "roster_sync"]
    given_by = await test_db.fetchval("SELECT given_by FROM biometric_consents WHERE student_id = $1",
                                      student.student_id)
    assert given_by == await test_db.fetchval("SELECT id FROM users WHERE username = 'admin'")
