"""In a real browser, on a desktop and on a phone (390 px): an admin finds a student by roll number,
deactivates them (the student's open page loses its session), is refused deleting a teacher (the reason
shows next to the row), adds a student (sees the activation code once), resets its password and MFA (the
answers next to the row) and deletes that mistake, then imports a CSV (the bad row reported, then fixed;
the codes shown once and downloaded as CSV)."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support.browser_helpers import chromium, run_in_browser_thread

from hub.db.seed import DEMO_PASSWORD, faculty_id

pytestmark = pytest.mark.integration


async def _login(page, base: str, username: str) -> None:
    await page.goto(f"{base}/login")
    await page.fill("#username", username)
    await page.fill("#password", DEMO_PASSWORD)
    await page.click("#login-submit")
    await page.wait_for_url(lambda url: "/login" not in url)


@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
async def test_admin_manages_people(hub, hub_campus, test_db, tmp_path, phone):
    student = hub_campus.students[-1]
    roll = await test_db.fetchval("SELECT roll_number FROM students WHERE id = $1", student.student_id)
    teacher = await test_db.fetchval("SELECT username FROM users WHERE id = $1", faculty_id(1))
    base = f"http://127.0.0.1:{hub.web_port}"
    seen: dict[str, str] = {}

    async def script() -> None:
        async with chromium(phone=phone) as browser:
            # The student has a page open (a browser of their own: separate cookies).
            async with chromium(phone=phone) as student_browser:
                own = await student_browser.new_page()
                await _login(own, base, student.username)
                await own.goto(f"{base}/student")

                page = await browser.new_page()
                page.on("dialog", lambda dialog: dialog.accept())
                await _login(page, base, "admin")
                await page.goto(f"{base}/admin/people")
                await page.locator("#people-body tr[data-user-id]").first.wait_for(timeout=10_000)
                seen["range"] = await page.locator("#people-range").inner_text()

                # Search by roll number, deactivate.
                await page.fill("#people-q", roll)
                await page.click("#people-search button[type=submit]")
                row = page.locator(f'#people-body tr[data-user-id="{student.student_id}"]')
                await page.locator("#people-range", has_text="1–1 of 1").wait_for(timeout=10_000)
                await row.get_by_role("button", name="Deactivate").click()
                await page.locator("#confirm-dialog-confirm").click()  # the shared confirmation
                await row.get_by_role("button", name="Reactivate").wait_for(timeout=10_000)
                seen["state"] = await row.locator("td[data-label=State]").inner_text()

                # The student's open page: its next request (with the page's own cookies) finds the session
                # gone. Asked through the page's request context, not page.evaluate: the page itself may be
                # navigating to the login page by then (its live feed was closed), which destroys a script's context.
                response = await own.request.get(f"{base}/api/v1/me")
                seen["student_me"] = str(response.status)

                # Deleting someone with records is refused, and the reason shows next to the row.
                await page.fill("#people-q", teacher)
                await page.click("#people-search button[type=submit]")
                teacher_row = page.locator(f'#people-body tr[data-username="{teacher}"]')
                await teacher_row.wait_for(timeout=10_000)
                await teacher_row.get_by_role("button", name="Delete").click()
                await page.locator("#confirm-dialog-confirm").click()  # the shared confirmation
                reason = teacher_row.locator(".people-refusal")
                await reason.wait_for(timeout=10_000)
                seen["refusal"] = await reason.inner_text()

                # Add a student: the activation code is shown once.
                await page.fill("#people-create-form input[name=username]", "new.student")
                await page.fill("#people-create-form input[name=display_name]", "<b>New</b> Student")
                await page.fill("#people-create-form input[name=roll_number]", "NEW-001")
                await page.fill("#people-create-form input[name=section]", "A")
                await page.click("#people-create-form button[type=submit]")
                code = page.locator("#people-activation-code")
                await page.locator("#people-activation").wait_for(state="visible", timeout=10_000)
                seen["code"] = await code.inner_text()

                # Edit the new account, then delete it (no records: allowed).
                await page.fill("#people-q", "new.student")
                await page.click("#people-search button[type=submit]")
                new_row = page.locator('#people-body tr[data-username="new.student"]')
                await new_row.wait_for(timeout=10_000)
                seen["new_name"] = await new_row.locator("td[data-label=Name]").inner_text()
                await new_row.get_by_role("button", name="Edit").click()
                await page.fill("#people-edit-form input[name=program]", "B.Sc Physics")
                await page.click("#people-edit-form button[type=submit]")
                await page.locator("#people-message", has_text="new.student is saved.").wait_for(timeout=10_000)
                # Reset its password: the code shows once, next to the row's buttons; its MFA reset is
                # refused (never enrolled), the reason also next to the row.
                await new_row.get_by_role("button", name="Reset password").click()
                await page.locator("#confirm-dialog-confirm").click()  # the shared confirmation
                reset_code = new_row.locator(".people-note .people-reset-code")
                await reset_code.wait_for(timeout=10_000)
                seen["reset_code"] = await reset_code.inner_text()
                await new_row.get_by_role("button", name="Reset MFA").click()
                await page.locator("#confirm-dialog-confirm").click()  # the shared confirmation
                mfa_refusal = new_row.locator(".people-refusal")
                await mfa_refusal.wait_for(timeout=10_000)
                seen["mfa_refusal"] = await mfa_refusal.inner_text()
                seen["reset_visible"] = str(await new_row.get_by_role("button", name="Reset MFA").is_visible())
                await new_row.get_by_role("button", name="Delete").click()
                await page.locator("#confirm-dialog-confirm").click()  # the shared confirmation
                # The answer sits beside the list (the row is gone), not in the box at the top of the page.
                await page.locator("#people-range + .feedback", has_text="new.student is deleted.").wait_for(
                    timeout=10_000)

                # Import a CSV: the check lists the bad row (line, field, reason); fixed, it is imported and
                # the codes show once, downloadable as CSV.
                header = "role,name,username,email,roll_number,program,section\n"
                good = "faculty,Kavya Nair,knair,kavya@campus.example,,,\n"
                await page.fill("#people-import-text", header + good + "student,Arjun Das,,arjun@,IMP-01,B.Tech,A\n")
                await page.click("#people-import-check")
                problem = page.locator("#people-import-problems-body tr")
                await problem.first.wait_for(timeout=10_000)
                seen["problems"] = await page.locator("#people-import-problems-body").inner_text()
                seen["import_message"] = await page.locator("#people-import-message").inner_text()
                await page.fill("#people-import-text",
                                header + good + "student,Arjun Das,,arjun@campus.example,IMP-01,B.Tech,A\n")
                await page.click("#people-import-check")
                await page.locator("#people-import-message", has_text="The file is fine").wait_for(timeout=10_000)
                await page.click("#people-import-apply")
                await page.locator("#people-import-codes-body tr").nth(1).wait_for(timeout=10_000)
                seen["codes"] = await page.locator("#people-import-codes-body").inner_text()
                async with page.expect_download(timeout=10_000) as download_info:
                    await page.click("#people-import-download")
                download = await download_info.value
                seen["download_name"] = download.suggested_filename
                seen["download"] = await asyncio.to_thread(Path(await download.path()).read_text)
                seen["overflow"] = str(await page.evaluate(
                    "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"))
                await page.screenshot(path=str(tmp_path / f"people-{'phone' if phone else 'desktop'}.png"),
                                      full_page=True)

    await run_in_browser_thread(script)
    assert seen["range"].startswith("1–")
    assert seen["state"] == "deactivated"
    assert seen["student_me"] == "401"
    assert "teaches courses" in seen["refusal"] and "deactivate" in seen["refusal"]
    assert len(seen["code"]) >= 8
    assert seen["new_name"] == "<b>New</b> Student"  # text, not markup
    assert seen["overflow"] == "0"  # nothing wider than the screen
    assert len(seen["reset_code"]) >= 8
    assert "not on" in seen["mfa_refusal"] and seen["reset_visible"] == "True"
    assert "3" in seen["problems"] and "email" in seen["problems"]  # line 3, the email field
    assert "nothing was imported" in seen["import_message"]
    assert "knair" in seen["codes"] and "IMP-01" in seen["codes"]
    assert seen["download_name"] == "activation-codes.csv"
    lines = seen["download"].splitlines()
    assert lines[0] == "username,display_name,role,email,roll_number,activation_code,expires_at"
    assert len(lines) == 3 and lines[1].startswith("knair,Kavya Nair,faculty,")
    assert await test_db.fetchval("SELECT count(*) FROM students WHERE roll_number = 'IMP-01'") == 1
    assert await test_db.fetchval("SELECT deactivated_at IS NOT NULL FROM users WHERE id = $1", student.student_id)
    assert await test_db.fetchval("SELECT count(*) FROM users WHERE username = 'new.student'") == 0
    program = await test_db.fetchval(
        "SELECT after->>'program' FROM audit_log WHERE entity = 'user' AND action = 'updated' ORDER BY id DESC LIMIT 1")
    assert program == "B.Sc Physics"
