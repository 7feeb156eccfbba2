"""In a real browser at phone size: faculty tag the topics a live class covered and record understanding
levels ("everyone here" then an exception), and a second open roster sees both live. (The syllabus and
progress pages are checked in every role by tests/browser/test_every_page.py, like every page.)"""
from __future__ import annotations

from support.browser_helpers import chromium_browser, log_in, new_sized_context, run_in_browser_thread
from support.hub_helpers import session_with_device

from hub.db.seed import DEMO_PASSWORD


async def test_faculty_tag_topics_and_understanding_on_the_live_roster_from_a_phone(hub, hub_campus, test_db, tmp_path):
    session, _ = session_with_device(hub_campus)
    here, exception = session.enrolled[0], session.enrolled[1]
    faculty = await test_db.fetchval(
        "SELECT u.username FROM courses c JOIN users u ON u.id = c.faculty_id WHERE c.id = $1", session.course_id)
    first_topic = await test_db.fetchrow(
        "SELECT id, title FROM syllabus_topics WHERE course_id = $1 ORDER BY position LIMIT 1", session.course_id)
    base = f"http://127.0.0.1:{hub.web_port}"
    url = f"{base}/faculty/sessions/{session.session_id}"

    async def run() -> tuple[str | None, str]:
        async with chromium_browser() as browser:
            phone = await new_sized_context(browser, phone=True)
            page = await phone.new_page()
            await log_in(page, base, faculty, DEMO_PASSWORD)
            await page.goto(url)
            await page.locator('#live-status[data-state="live"]').wait_for(timeout=10_000)
            # A second viewer of the same roster (the desktop), to see the changes arrive live.
            watcher_context = await new_sized_context(browser, phone=False, storage_state=await phone.storage_state())
            watcher = await watcher_context.new_page()
            await watcher.goto(url)
            await watcher.locator('#live-status[data-state="live"]').wait_for(timeout=10_000)
            # Two students are here (marked present on the roster).
            for student_id in (here, exception):
                await page.locator(f'#roster tr[data-student-id="{student_id}"] input.row-select').check()
            await page.locator('#mark-panel button[data-mark="present"]').click()
            await page.locator("#mark-message", has_text="changed").wait_for(timeout=5_000)
            # One tap tags the first suggestion: the syllabus's first topic in a course's first class.
            chip = page.locator(f'#topic-suggested button[data-topic-id="{first_topic["id"]}"]')
            await chip.click()
            await page.locator(f'#topic-suggested button[data-topic-id="{first_topic["id"]}"][aria-pressed="true"]'
                               ).wait_for(timeout=5_000)
            await watcher.locator(f'#topic-suggested button[data-topic-id="{first_topic["id"]}"][aria-pressed="true"]'
                                  ).wait_for(timeout=5_000)
            # Understanding: everyone here 4, one exception 2, save.
            await page.locator('[data-level-all="4"]').click()
            await page.locator(f'#understanding-table tr[data-level-student="{exception}"] select').select_option("2")
            await page.locator("#understanding-save").click()
            saved = page.locator("#understanding-panel .feedback", has_text="Saved 2 level")
            await saved.wait_for(timeout=5_000)
            assert await saved.is_visible()
            watched = watcher.locator(f'#understanding-table tr[data-level-student="{exception}"] select')
            for _ in range(50):  # the live message lands within a moment
                if await watched.input_value() == "2":
                    break
                await watcher.wait_for_timeout(100)
            await page.screenshot(path=str(tmp_path / "tagging-phone.png"), full_page=True)
            return await watched.input_value(), await page.locator(
                f'#understanding-table tr[data-level-student="{here}"] select').input_value()

    watched_level, here_level = await run_in_browser_thread(run)
    assert (watched_level, here_level) == ("2", "4")
    levels = dict(await test_db.fetch(
        "SELECT student_id, level FROM topic_understanding WHERE session_id = $1 AND topic_id IS NULL",
        session.session_id))
    assert levels == {here: 4, exception: 2}
    progress = dict(await test_db.fetch(
        "SELECT student_id, status FROM topic_progress WHERE topic_id = $1 AND student_id = ANY($2::text[])",
        first_topic["id"], [here, exception]))
    assert progress == {here: "completed", exception: "needs_review"}

