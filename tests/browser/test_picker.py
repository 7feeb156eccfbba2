"""The searchable picker (CampusHub.picker, web/static/app.js; issue 15 "pickers replace typed ids"), in a
real browser against the real hub: on the alarm-rule page an ops user types part of a room's name, moves to
it with the arrow keys, picks it with Enter and saves; the rule stored in PostgreSQL names that room's id.
The picker shows names only, and axe finds no serious or critical WCAG 2.1 AA violation with its list open."""
from __future__ import annotations

import uuid

from support.browser_helpers import DESKTOP, axe_violations, chromium, console_errors, log_in, run_in_browser_thread


async def test_type_part_of_a_room_name_pick_with_the_keyboard_and_the_room_id_is_saved(hub, hub_campus, test_db):
    tag = uuid.uuid4().hex[:6]
    building = f"Picker Hall {tag}"
    # Twelve rooms whose names share a word, so typing filters a list longer than a glance.
    rooms = [(f"pick-{tag}-{i:02d}", f"Lab {i:02d} Annex {tag}") for i in range(1, 13)]
    target_id, target_name = rooms[6]
    await test_db.run(lambda conn: conn.executemany(
        "INSERT INTO rooms (id, name, building) VALUES ($1, $2, $3)", [(i, n, building) for i, n in rooms]))
    metric = f"co2_{uuid.uuid4().hex[:8]}"
    base = f"http://127.0.0.1:{hub.web_port}"
    seen: dict[str, object] = {}

    async def script() -> None:
        async with chromium() as browser:
            page = await browser.new_page()
            await page.set_viewport_size(DESKTOP)
            errors = console_errors(page)
            await log_in(page, base, "ops", "campushub")
            await page.goto(f"{base}/settings/thresholds")
            await page.fill("#rule-metric", metric)
            await page.select_option("#rule-op", "above")
            await page.fill("#rule-value", "1000")
            await page.fill("#rule-clear", "900")
            await page.select_option("#rule-scope", "room")
            combobox = page.locator("#rule-room-field").get_by_role("combobox")
            seen["attrs"] = {a: await combobox.get_attribute(a) for a in ("aria-autocomplete", "aria-controls")}
            await combobox.click()
            await combobox.fill("")
            # Two words of the name, in another order and case: every word must match, anywhere.
            await combobox.press_sequentially(f"{tag} annex")
            listbox = page.locator(f"#{seen['attrs']['aria-controls']}")  # type: ignore[index]
            await listbox.wait_for(state="visible")
            seen["expanded"] = await combobox.get_attribute("aria-expanded")
            seen["offered"] = await listbox.get_by_role("option").all_inner_texts()
            seen["axe_open"] = await axe_violations(page)
            for _ in range(6):  # the first match is highlighted; six more steps down reach the seventh
                await combobox.press("ArrowDown")
            seen["active"] = await page.locator(f"#{await combobox.get_attribute('aria-activedescendant')}").inner_text()
            await combobox.press("Enter")
            seen["shown"] = await combobox.input_value()
            seen["collapsed"] = await combobox.get_attribute("aria-expanded")
            seen["carried"] = await page.locator("#rule-room").input_value()
            # Escape closes an open list and keeps the choice.
            await combobox.press("ArrowDown")
            await combobox.press("Escape")
            seen["after_escape"] = (await listbox.is_hidden(), await combobox.input_value())
            seen["axe_closed"] = await axe_violations(page)
            await page.click("#rule-save")
            seen["added"] = await page.locator("#rule-feedback.feedback-success").inner_text(timeout=10_000)
            seen["errors"] = errors

    try:
        await run_in_browser_thread(script)
        stored = await test_db.fetchval("SELECT room_id FROM threshold_rules WHERE metric = $1", metric)
    finally:
        await test_db.execute("DELETE FROM rooms WHERE id = ANY($1::text[])", [i for i, _ in rooms])
    assert seen["attrs"]["aria-autocomplete"] == "list"  # type: ignore[index]
    assert seen["expanded"] == "true"
    offered = seen["offered"]
    assert len(offered) == 12 and all(tag in text and building in text for text in offered), offered  # type: ignore[arg-type]
    assert not any(room_id in text for room_id, _ in rooms for text in offered)  # type: ignore[union-attr]
    assert target_name in str(seen["active"])
    assert seen["shown"] == target_name and seen["collapsed"] == "false"
    assert seen["carried"] == target_id
    assert seen["after_escape"] == (True, target_name)
    assert "Rule added" in str(seen["added"])
    assert stored == target_id
    assert seen["axe_open"] == [] and seen["axe_closed"] == [], (seen["axe_open"], seen["axe_closed"])
    assert seen["errors"] == []
