"""In a real browser: a student opens their privacy page, clicks "Download my data", and gets a zip of their
own records (with a README), on a running hub; the download is in the audit log."""
from __future__ import annotations

import io
import json
import zipfile

from support.browser_helpers import chromium, run_in_browser_thread

from hub.db.seed import DEMO_PASSWORD


async def test_student_downloads_their_data(hub, hub_campus, test_db, tmp_path):
    student = hub_campus.students[2]
    other = hub_campus.students[3]
    base = f"http://127.0.0.1:{hub.web_port}"

    async def script() -> tuple[bytes, str, str]:
        async with chromium(phone=True) as phone:
            page = await phone.new_page()
            await page.goto(f"{base}/login")
            await page.fill("#username", student.username)
            await page.fill("#password", DEMO_PASSWORD)
            await page.click("#login-submit")
            await page.wait_for_url(lambda url: "/login" not in url)
            await page.goto(f"{base}/student/privacy")
            section = page.locator("#data-export")
            await section.wait_for(timeout=10_000)
            heading = await section.locator("h2").inner_text()
            async with page.expect_download(timeout=30_000) as pending:
                await page.click("#export-download")
            download = await pending.value
            path = tmp_path / download.suggested_filename
            await download.save_as(path)
            assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            await page.screenshot(path=str(tmp_path / "export.png"), full_page=True)
            return path.read_bytes(), heading, download.suggested_filename

    data, heading, filename = await run_in_browser_thread(script)
    assert heading == "Export my data"
    assert filename.endswith(".zip")
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert "README.txt" in archive.namelist() and "attendance.csv" in archive.namelist()
    profile = json.loads(archive.read("profile.json"))
    assert [p["id"] for p in profile] == [student.student_id]
    attendance = json.loads(archive.read("attendance.json"))
    assert {r["student_id"] for r in attendance} <= {student.student_id}
    assert other.student_id not in archive.read("attendance.csv").decode()
    actors = [r["actor"] for r in await test_db.fetch(
        "SELECT actor FROM audit_log WHERE entity = 'personal_data' AND action = 'exported' AND entity_id = $1",
        student.student_id)]
    assert actors == [student.student_id]
