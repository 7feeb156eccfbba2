"""Going live, in a real browser, from an EMPTY migrated database (no demo seed, MFA required of admins
as `campushub serve` has it):

1. `campushub users create-admin admin --password-stdin` (a real subprocess) makes the first admin;
2. the admin logs in, is sent to enrol TOTP (the test computes the codes with pyotp from the shown key);
3. on the People page the admin checks a CSV of faculty and students: the one bad row is reported with its
   line, field and reason; fixed, the file is imported and the activation codes are shown once;
4. a faculty member activates their account with their code at /activate, logs in and gets their day: the
   empty campus has no course yet, so the faculty page renders "No sessions today." cleanly (the
   issue's "sees today's sessions", on a campus with none);
5. a student activates and logs in, with their live page open in a second browser; the admin deactivates
   them and that open page loses its session at once: its websocket closes and it lands on the login page.

One test, every wait bounded (Playwright timeouts, the subprocess's timeout).
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pyotp
import pytest
import trio
from support.browser_helpers import chromium, run_in_browser_thread

from hub.app.supervision import run_hub
from hub.core.config import Settings

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "orbit lantern quiet mango"
FACULTY_PASSWORD = "copper meadow sailing fox"
STUDENT_PASSWORD = "winter plum seven bridges"
WAIT_MS = 15_000

HEADER = "role,name,username,email,roll_number,program,section\n"
FACULTY_ROW = "faculty,Meera Iyer,miyer,meera@campus.example,,,\n"
STUDENT_ROW = "student,Asha Rao,,asha@campus.example,GL-001,B.Tech CSE,A\n"
BAD_ROW = "student,Ravi Kumar,,ravi@,GL-002,B.Tech CSE,A\n"  # line 4: the email is not one
FIXED_ROW = "student,Ravi Kumar,,ravi@campus.example,GL-002,B.Tech CSE,A\n"


@pytest.fixture
def hub_settings(hub_settings: Settings) -> Settings:
    return dataclasses.replace(hub_settings, mfa_optional_demo=False)  # MFA required of admins, as `serve` has it


async def _create_first_admin(settings: Settings, tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    assert settings.database_url is not None
    env = dict(os.environ, CAMPUSHUB_DATABASE_URL=settings.database_url, CAMPUSHUB_DATA_DIR=str(tmp_path / "cli"))
    with trio.fail_after(60):
        return await trio.run_process(
            [sys.executable, "-m", "hub", "users", "create-admin", "admin", "--password-stdin"],
            stdin=(ADMIN_PASSWORD + "\n").encode(), capture_stdout=True, capture_stderr=True, env=env, check=False)


async def test_a_new_campus_goes_live_from_an_empty_database(hub_settings, test_db, tmp_path):
    assert await test_db.fetchval("SELECT count(*) FROM users") == 0  # empty: no demo seed
    made = await _create_first_admin(hub_settings, tmp_path)
    assert made.returncode == 0, made.stderr.decode()
    seen: dict[str, str] = {}

    async with trio.open_nursery() as nursery:
        hub = await nursery.start(partial(run_hub, hub_settings, port=0))
        base = f"http://127.0.0.1:{hub.web_port}"

        async def login(page, username: str, password: str) -> None:
            await page.goto(f"{base}/login")
            await page.fill("#username", username)
            await page.fill("#password", password)
            await page.click("#login-submit")
            await page.wait_for_url(lambda url: "/login" not in url, timeout=WAIT_MS)

        async def activate(page, code: str, password: str) -> None:
            await page.goto(f"{base}/activate?code={code}")
            await page.fill("#new-password", password)
            await page.locator("#password-verdict").filter(has_text="Good password").wait_for(timeout=WAIT_MS)
            await page.click("#password-submit")
            await page.locator("#password-done").wait_for(state="visible", timeout=WAIT_MS)

        async def script() -> None:
            async with chromium() as admin_browser, chromium() as faculty_browser, \
                    chromium(phone=True) as student_browser:
                # 1-2. The CLI's admin logs in and must enrol a second factor first.
                admin = await admin_browser.new_page()
                admin.set_default_timeout(WAIT_MS)
                admin.on("dialog", lambda dialog: dialog.accept())
                await login(admin, "admin", ADMIN_PASSWORD)
                seen["after_login"] = admin.url
                await admin.click("#mfa-start")
                await admin.locator("#mfa-qr[src^='data:image/svg+xml']").wait_for()
                secret = (await admin.locator("#mfa-secret").inner_text()).strip()
                await admin.fill("#mfa-confirm-code", pyotp.TOTP(secret).now())
                await admin.click("#mfa-confirm")
                await admin.locator("#mfa-recovery").wait_for(state="visible")

                # 3. The CSV: one bad row reported (line, field, reason), then fixed and imported.
                await admin.goto(f"{base}/admin/people")
                await admin.fill("#people-import-text", HEADER + FACULTY_ROW + STUDENT_ROW + BAD_ROW)
                await admin.click("#people-import-check")
                await admin.locator("#people-import-problems-body tr").first.wait_for()
                problems = admin.locator("#people-import-problems-body tr")
                seen["problem_count"] = str(await problems.count())
                seen["problem_line"] = await problems.first.locator("td[data-label=Line]").inner_text()
                seen["problem_field"] = await problems.first.locator("td[data-label=Field]").inner_text()
                await admin.fill("#people-import-text", HEADER + FACULTY_ROW + STUDENT_ROW + FIXED_ROW)
                await admin.click("#people-import-check")
                await admin.locator("#people-import-message", has_text="The file is fine").wait_for()
                await admin.click("#people-import-apply")
                await admin.locator("#people-import-codes-body tr").nth(2).wait_for()
                codes: dict[str, str] = {}
                for row in await admin.locator("#people-import-codes-body tr").all():
                    username = await row.locator("td[data-label=Username]").inner_text()
                    codes[username] = await row.locator("td[data-label='Activation code']").inner_text()
                seen["imported"] = ",".join(sorted(codes))

                # 4. The faculty member activates their account, logs in and gets their (empty) day.
                faculty = await faculty_browser.new_page()
                faculty.set_default_timeout(WAIT_MS)
                await activate(faculty, codes["miyer"], FACULTY_PASSWORD)
                await login(faculty, "miyer", FACULTY_PASSWORD)
                seen["faculty_url"] = faculty.url
                seen["faculty_day"] = await faculty.locator("#no-sessions").inner_text()
                seen["faculty_errors"] = str(await faculty.locator(".error:visible").count())

                # 5. The student's live page is open (its websocket says "live") ...
                student = await student_browser.new_page()
                student.set_default_timeout(WAIT_MS)
                student_name = next(name for name in codes if name.lower() == "gl-001")
                await activate(student, codes[student_name], STUDENT_PASSWORD)
                sockets: list = []
                student.on("websocket", lambda socket: sockets.append(socket))
                await login(student, student_name, STUDENT_PASSWORD)
                if "/student" not in student.url:
                    await student.goto(f"{base}/student")
                await student.locator("#live-status[data-state=live]").wait_for()
                closed: list[float] = []
                for socket in sockets:
                    socket.on("close", lambda _socket: closed.append(time.monotonic()))

                # ... when the admin deactivates them: it loses its session at once.
                await admin.fill("#people-q", "GL-001")
                await admin.click("#people-search button[type=submit]")
                row = admin.locator(f'#people-body tr[data-username="{student_name}"]')
                await admin.locator("#people-range", has_text="1–1 of 1").wait_for()
                started = time.monotonic()
                await row.get_by_role("button", name="Deactivate").click()
                await admin.locator("#confirm-dialog-confirm").click()  # the shared confirmation
                await row.get_by_role("button", name="Reactivate").wait_for()
                await student.wait_for_url(lambda url: "/login" in url, timeout=5_000)
                seen["student_logged_out_s"] = f"{time.monotonic() - started:.2f}"
                seen["socket_closed_s"] = f"{closed[0] - started:.2f}" if closed else "never"
                seen["student_me"] = str((await student.request.get(f"{base}/api/v1/me")).status)
                await admin.screenshot(path=str(tmp_path / "go-live-people.png"), full_page=True)

        await run_in_browser_thread(script)
        nursery.cancel_scope.cancel()

    assert "/account/mfa" in seen["after_login"]  # MFA is required of the admin: enrolment comes first
    assert seen["problem_count"] == "1"
    assert seen["problem_line"] == "4" and seen["problem_field"] == "email"
    assert seen["imported"].lower() == "gl-001,gl-002,miyer"
    assert seen["faculty_url"].endswith("/faculty")
    assert seen["faculty_day"] == "No sessions today." and seen["faculty_errors"] == "0"
    assert float(seen["student_logged_out_s"]) < 5
    assert seen["socket_closed_s"] != "never" and float(seen["socket_closed_s"]) < 2
    assert seen["student_me"] == "401"
    admin_id = await test_db.fetchval("SELECT id FROM users WHERE username = 'admin'")
    assert await test_db.fetchval("SELECT confirmed_at IS NOT NULL FROM user_mfa WHERE user_id = $1", admin_id)
    assert await test_db.fetchval(
        "SELECT count(*) FROM students s JOIN users u ON u.id = s.id WHERE s.roll_number IN ('GL-001', 'GL-002')"
        " AND u.password_hash <> ''") == 1  # the one who activated
    assert await test_db.fetchval(
        "SELECT deactivated_at IS NOT NULL FROM users u JOIN students s ON s.id = u.id WHERE s.roll_number = 'GL-001'")
