"""In a real browser: an admin imports an enrolment CSV with a bad row (sees the line and the reason,
nothing applied), fixes it (applied), then adds a weekly slot and sees its sessions appear."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

from support.browser_helpers import chromium, pick, run_in_browser_thread

from hub.db.seed import faculty_id
from hub.db.seed.academic import TERM_ID

SECTION_B = "course-001-B"


async def test_admin_imports_enrolments_and_grows_the_timetable(hub, hub_campus, test_db, tmp_path):
    session = next(s for s in hub_campus.sessions if s.course_id == "course-001")
    first, second = sorted(session.enrolled)[:2]
    await test_db.execute(
        "INSERT INTO sections (id, course_id, term_id, name) VALUES ($1, 'course-001', $2, 'B')", SECTION_B, TERM_ID)
    now = datetime.now(timezone.utc)
    weekday = (now.date() + timedelta(days=1)).weekday()  # tomorrow's: the slot's first class is in the future
    base = f"http://127.0.0.1:{hub.web_port}"

    def csv(*student_ids: str) -> dict:
        text = "student_id,section_id\n" + "".join(f"{sid},{SECTION_B}\n" for sid in student_ids)
        return {"name": "enrolments.csv", "mimeType": "text/csv", "buffer": text.encode()}

    async def section_of(student_id: str) -> str:
        return await test_db.fetchval(
            "SELECT section_id FROM enrolments WHERE course_id = 'course-001' AND student_id = $1", student_id)

    checkpoints: dict[str, str] = {}

    async def script() -> None:
        """Asyncio, in the browser thread; what it saw goes to ``checkpoints``."""
        async with chromium() as browser:
            page = await browser.new_page()
            await page.goto(f"{base}/login")
            await page.fill("#username", "admin")
            await page.fill("#password", "campushub")
            await page.click("#login-submit")
            await page.wait_for_url(lambda url: "/login" not in url)
            await page.goto(f"{base}/admin/academic")
            await page.locator(f'#import-form select[name=term_id] option[value="{TERM_ID}"]').wait_for(
                state="attached")

            # A file with a bad row: its line and reason are shown, nothing is applied.
            await page.set_input_files("#import-form input[name=file]", files=[csv(first, "stu-9999")])
            await page.click("#import-form button[type=submit]")
            bad = page.locator("#import-errors tbody tr")
            await bad.first.wait_for(timeout=10_000)
            checkpoints["rejected"] = await bad.first.inner_text()
            checkpoints["rejected_rows"] = str(await bad.count())
            checkpoints["rejected_summary"] = await page.locator("#import-summary").inner_text()
            checkpoints["enrolled_in_b"] = str(await page.evaluate(
                "async (s) => (await (await fetch('/api/v1/enrolments?section_id=' + s)).json()).total", SECTION_B))

            # Fixed: applied.
            await page.set_input_files("#import-form input[name=file]", files=[csv(first, second)])
            await page.click("#import-form button[type=submit]")
            summary = page.locator("#import-summary", has_text="Imported 2 rows")
            await summary.wait_for(timeout=10_000)
            checkpoints["imported"] = await summary.inner_text()

            # A weekly slot for the new section: its sessions appear at once.
            await pick(page, "#timetable-term", TERM_ID)
            await page.locator(f'#slot-section option[value="{SECTION_B}"]').wait_for(state="attached")
            await pick(page, "#slot-section", SECTION_B)
            await pick(page, "#slot-form select[name=room_id]", session.room_id)
            await page.select_option("#slot-form select[name=weekday]", str(weekday))
            await page.fill("#slot-form input[name=starts_time]", "20:00")
            await page.fill("#slot-form input[name=ends_time]", "21:00")
            await page.click("#slot-form button[type=submit]")
            added = page.locator("#slot-form .feedback-success", has_text="Slot added.")
            await added.wait_for(timeout=10_000)
            checkpoints["slot_added"] = await added.inner_text()
            await page.locator("#term-sessions-body tr[data-session-id^='ses-slot-']").first.wait_for(timeout=10_000)
            checkpoints["listed"] = " ".join(await page.locator(
                "#term-sessions-body tr[data-session-id^='ses-slot-']").evaluate_all(
                "rows => rows.map(r => r.dataset.sessionId)"))

            # Generating again is idempotent: nothing new.
            await page.click("#generate")
            result = page.locator("#generate-result", has_text="Created 0")
            await result.wait_for(timeout=10_000)
            checkpoints["generated"] = await result.inner_text()
            await page.screenshot(path=str(tmp_path / "admin-academic.png"), full_page=True)

    await run_in_browser_thread(script)
    assert checkpoints["rejected_rows"] == "1"
    assert checkpoints["rejected"].split("\t")[:2] == ["3", "student_id"], checkpoints["rejected"]
    assert "no student with id 'stu-9999'" in checkpoints["rejected"]
    assert "nothing was imported" in checkpoints["rejected_summary"]
    assert checkpoints["enrolled_in_b"] == "0"  # nothing applied
    assert "2 moved" in checkpoints["imported"]
    assert await section_of(first) == await section_of(second) == SECTION_B

    slot_id = await test_db.fetchval("SELECT id FROM timetable_slots WHERE section_id = $1", SECTION_B)
    ends_on = await test_db.fetchval("SELECT ends_on FROM terms WHERE id = $1", TERM_ID)
    expected = [day for day in (now.date() + timedelta(days=n) for n in range((ends_on - now.date()).days + 1))
                if day.weekday() == weekday]
    starts = [r["starts_at"] for r in await test_db.fetch(
        "SELECT starts_at FROM class_sessions WHERE slot_id = $1 AND status = 'scheduled' ORDER BY starts_at",
        slot_id)]
    assert starts == [datetime.combine(day, time(20), timezone.utc) for day in expected]
    assert f"{len(expected)} session(s) created" in checkpoints["slot_added"]
    assert checkpoints["listed"].split()[0] == f"ses-{slot_id}-{starts[0]:%Y%m%dT%H%MZ}"
    assert "Created 0" in checkpoints["generated"]


async def test_faculty_adds_a_make_up_session_from_todays_page(hub, hub_campus, test_db, tmp_path):
    session = next(s for s in hub_campus.sessions if s.course_id == "course-001")
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).date()
    base = f"http://127.0.0.1:{hub.web_port}"
    seen: dict[str, str] = {}

    async def script() -> None:
        async with chromium() as browser:
            page = await browser.new_page()
            await page.goto(f"{base}/login")
            # The form takes the browser's local time; ask the browser what instants it means.
            for label, clock_time in (("starts", "17:00"), ("ends", "18:15")):
                seen[label] = await page.evaluate(
                    "(local) => new Date(local).toISOString()", f"{tomorrow.isoformat()}T{clock_time}")
            await page.fill("#username", "faculty1")
            await page.fill("#password", "campushub")
            await page.click("#login-submit")
            await page.wait_for_url(lambda url: "/login" not in url)
            await page.goto(f"{base}/faculty")
            await page.locator('#add-session-course option[value="course-001"]').wait_for(state="attached")
            await pick(page, "#add-session-course", "course-001")
            await pick(page, "#add-session-room", session.room_id)
            await page.fill("#add-session-form input[name=date]", tomorrow.isoformat())
            await page.fill("#add-session-form input[name=start]", "17:00")
            await page.fill("#add-session-form input[name=end]", "18:15")
            await page.fill("#add-session-form input[name=topics]", "revision, <b>exam</b> prep")
            async with page.expect_navigation():
                await page.click("#add-session-form button[type=submit]")
            seen["message"] = await page.locator("#ac-message").inner_text()
            await page.screenshot(path=str(tmp_path / "faculty-add-session.png"), full_page=True)

    await run_in_browser_thread(script)
    starts = datetime.fromisoformat(seen["starts"].replace("Z", "+00:00"))
    row = await test_db.fetchrow(
        "SELECT room_id, starts_at, ends_at, origin, topics, created_by FROM class_sessions"
        " WHERE course_id = 'course-001' AND starts_at = $1", starts)
    assert row is not None, seen
    assert (row["room_id"], row["origin"]) == (session.room_id, "manual")
    assert row["ends_at"] - row["starts_at"] == timedelta(minutes=75)
    assert row["ends_at"] == datetime.fromisoformat(seen["ends"].replace("Z", "+00:00"))
    assert list(row["topics"]) == ["revision", "<b>exam</b> prep"]  # stored as text, shown escaped
    assert row["created_by"] == faculty_id(1)
