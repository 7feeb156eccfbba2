"""In a real browser: an admin searches the audit log for a student, sees the change (before → after,
why, hash), downloads the CSV export of that search, and verifies the chain."""
from __future__ import annotations

import csv
import io
import json

from support.browser_helpers import chromium, pick, run_in_browser_thread
from support.hub_helpers import session_with_device

from hub.db.attendance import AttendanceChange, apply_attendance_changes
from hub.db.seed import ADMIN_USERNAME


async def test_admin_searches_exports_and_verifies(hub, hub_campus, test_db, tmp_path):
    session, _ = session_with_device(hub_campus)
    student_id = session.enrolled[-1]

    async def change(conn):
        await apply_attendance_changes(conn, [AttendanceChange(session.session_id, student_id, "absent", "manual")],
                                       actor="usr-admin", reason="Left after roll call")
        await apply_attendance_changes(conn, [AttendanceChange(session.session_id, student_id, "excused", "correction")],
                                       actor="usr-admin", reason="Medical note shown")

    await test_db.run(change, transaction=True)
    roll = await test_db.fetchval("SELECT roll_number FROM students WHERE id = $1", student_id)
    head = await test_db.fetchrow("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
    base = f"http://127.0.0.1:{hub.web_port}"

    async def script() -> tuple[str, str, str, str]:
        async with chromium() as browser:
            page = await browser.new_page()
            await page.goto(f"{base}/login")
            await page.fill("#username", ADMIN_USERNAME)
            await page.fill("#password", "campushub")
            await page.click("#login-submit")
            await page.wait_for_url(lambda url: "/login" not in url)
            await page.click("#nav-audit")
            await page.wait_for_url(f"{base}/audit**")
            await pick(page, "#audit-student", student_id)
            await page.click("#audit-search")
            await page.wait_for_url(f"**student_id={student_id}")
            # The unfiltered first page holds that entry too: wait for the search's own results, in which
            # every entry is this student's (the seed's check-in of theirs too), newest first.
            await page.wait_for_function(
                "roll => { const s = [...document.querySelectorAll('#audit-results li.audit-entry .head .muted')];"
                " return s.length >= 2 && s.every(e => e.textContent.includes(roll)); }", arg=roll, timeout=10_000)
            newest = page.locator("#audit-results li.audit-entry", has_text="Medical note shown")
            entry_text = await newest.inner_text()
            subjects = await page.locator("#audit-results li.audit-entry .head .muted").all_inner_texts()
            assert len(subjects) >= 2 and all(roll in s for s in subjects), subjects
            # Narrowed to the session, the export holds exactly the two changes made here.
            await page.fill("#audit-session", session.session_id)
            await page.click("#audit-search")
            await page.locator('#audit-range:text-is("1–2 of 2")').wait_for(timeout=10_000)
            async with page.expect_download() as download_info:
                await page.click("#audit-export-csv")
            download = await download_info.value
            csv_path = tmp_path / "export.csv"
            await download.save_as(str(csv_path))

            await page.click("#audit-verify")
            result = page.locator("#audit-verify-result[data-ok]")
            await result.wait_for(timeout=10_000)
            await page.screenshot(path=str(tmp_path / "audit.png"), full_page=True)
            return entry_text, await result.inner_text(), csv_path.read_text(), download.suggested_filename

    entry_text, verdict, exported, filename = await run_in_browser_thread(script)
    # The admin's own sign-in is a security entry written after the changes: the verified head is newer.
    head_now = await test_db.fetchrow("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
    assert "absent" in entry_text and "excused" in entry_text and "→" in entry_text
    assert "Why: Medical note shown" in entry_text and "by usr-admin" in entry_text
    assert bytes(head["hash"]).hex()[:12] in entry_text  # the hash prefix of the newest entry
    assert filename == "audit-log.csv"
    rows = list(csv.DictReader(io.StringIO(exported)))
    # The download holds exactly the search's entries, oldest first.
    assert [r["reason"] for r in rows] == ["Left after roll call", "Medical note shown"]
    assert {r["student_id"] for r in rows} == {student_id}
    assert json.loads(rows[1]["before"])["status"] == "absent" and json.loads(rows[1]["after"])["status"] == "excused"
    assert verdict.startswith("Intact.") and bytes(head_now["hash"]).hex() in verdict


async def test_admin_finds_a_security_action_by_entity_and_action(hub, hub_campus, test_db, tmp_path):
    """A threshold rule changed by ops: the admin narrows the log to threshold_rule / updated and
    sees who changed what (before → after as fields), and the export link carries both filters."""
    from hub.db.thresholds import create_rule, update_rule

    fields = {"metric": "browser_audit", "room_type": None, "room_id": None, "op": "above", "value": 40.0,
              "clear_value": 35.0, "duration_s": 0, "severity": "minor", "enabled": True}
    rule = await create_rule(test_db, fields, "usr-ops")
    await update_rule(test_db, rule["id"], {**fields, "value": 45.0}, "usr-ops")
    base = f"http://127.0.0.1:{hub.web_port}"

    async def script() -> tuple[list[str], str, str]:
        async with chromium() as browser:
            page = await browser.new_page()
            await page.goto(f"{base}/login")
            await page.fill("#username", ADMIN_USERNAME)
            await page.fill("#password", "campushub")
            await page.click("#login-submit")
            await page.wait_for_url(lambda url: "/login" not in url)
            await page.goto(f"{base}/audit")
            await page.fill("#audit-entity", "threshold_rule")
            await page.fill("#audit-action", "updated")
            await page.fill("#audit-actor", "usr-ops")
            await page.click("#audit-search")
            await page.wait_for_url("**action=updated**")
            entry = page.locator("#audit-results li.audit-entry", has_text=f"threshold_rule updated: {rule['id']}")
            await entry.wait_for(timeout=10_000)
            subjects = await page.locator("#audit-results li.audit-entry .head .muted").all_inner_texts()
            href = await page.get_attribute("#audit-export-jsonl", "href") or ""
            await page.screenshot(path=str(tmp_path / "audit-security.png"), full_page=True)
            return subjects, await entry.inner_text(), href

    subjects, entry_text, href = await run_in_browser_thread(script)
    assert subjects and all(s.startswith("threshold_rule updated:") for s in subjects), subjects
    assert "by usr-ops" in entry_text and "value: 40" in entry_text and "value: 45" in entry_text
    assert "entity=threshold_rule" in href and "action=updated" in href and "actor=usr-ops" in href
