"""In a real browser at desktop size (issue 15 item 3): ops write an alarm rule for a room, preview what it
would have fired on the last 24 h of (seeded) readings, add it and delete it after a confirmation; an admin
edits the ticket SLA policy, is refused inline for an out-of-range value, then saves. Every outcome is
shown beside the button used, inside the viewport."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from support.browser_helpers import DESKTOP, chromium, console_errors, log_in, pick, run_in_browser_thread


async def _in_viewport(locator) -> str:
    """The element's text, after checking it is visible and wholly inside the viewport."""
    await locator.wait_for(state="visible", timeout=10_000)
    box = await locator.bounding_box()
    assert box is not None
    assert 0 <= box["y"] and box["y"] + box["height"] <= DESKTOP["height"], box
    return await locator.inner_text()


async def test_ops_preview_then_add_and_delete_an_alarm_rule(hub, hub_campus, test_db):
    device = await test_db.fetchrow("SELECT d.id, d.room_id, r.name FROM devices d JOIN rooms r ON r.id = d.room_id"
                                    " WHERE d.revoked_at IS NULL ORDER BY d.id LIMIT 1")
    metric = f"co2_{uuid.uuid4().hex[:8]}"
    start = datetime.now(timezone.utc) - timedelta(hours=2)
    values = [800.0] * 10 + [1250.0] * 20 + [850.0] * 10  # 20 min past 1000 ppm, then back
    await test_db.run(lambda conn: conn.executemany(
        "INSERT INTO sensor_readings (event_id, device_id, metric, value, unit, device_ts) VALUES ($1,$2,$3,$4,$5,$6)",
        [(uuid.uuid4(), device["id"], metric, v, "ppm", start + timedelta(minutes=i)) for i, v in enumerate(values)]))
    base = f"http://127.0.0.1:{hub.web_port}"
    seen: dict[str, str] = {}

    async def script() -> None:
        async with chromium() as browser:
            page = await browser.new_page()
            await page.set_viewport_size(DESKTOP)
            errors = console_errors(page)
            await log_in(page, base, "ops", "campushub")
            await page.goto(f"{base}/settings/thresholds")
            # The campus's seeded CO2 rule (hub/db/seed/device_health.py) is listed, in words.
            seen["seeded"] = await page.locator("#rules-body tr[data-rule-id]").first.inner_text(timeout=10_000)
            await page.fill("#rule-metric", metric)
            await page.select_option("#rule-op", "above")
            await page.fill("#rule-value", "1000")
            await page.fill("#rule-clear", "900")
            await page.fill("#rule-duration", "5")
            await page.select_option("#rule-scope", "room")
            await pick(page, "#rule-room", device["room_id"])
            await page.click("#rule-preview-button")
            seen["summary"] = await _in_viewport(page.locator("#rule-preview-summary", has_text="would have fired"))
            seen["trip"] = await page.locator("#rule-preview-body tr").first.inner_text()
            seen["trips"] = str(await page.locator("#rule-preview-body tr").count())
            # A level it never reached: the preview says it would not have fired.
            await page.fill("#rule-value", "2000")
            await page.fill("#rule-clear", "1900")
            await page.click("#rule-preview-button")
            seen["quiet"] = await _in_viewport(page.locator("#rule-preview-summary", has_text="would not have fired"))
            await page.fill("#rule-value", "1000")
            await page.fill("#rule-clear", "900")
            await page.click("#rule-save")
            seen["added"] = await _in_viewport(page.locator("#rule-feedback.feedback-success"))
            row = page.locator("#rules-body tr", has_text=metric)
            seen["row"] = await row.inner_text(timeout=10_000)
            await row.get_by_role("button", name="Delete").click()
            await page.locator("#confirm-dialog-confirm", has_text="Delete rule").click()
            seen["deleted"] = await _in_viewport(page.locator(".feedback-success", has_text="Rule deleted"))
            seen["errors"] = "\n".join(errors)

    await run_in_browser_thread(script)
    assert "co2" in seen["seeded"] and " ppm" in seen["seeded"]
    assert "would have fired 1 time in 1 room" in seen["summary"] and "40 readings" in seen["summary"]
    assert seen["trips"] == "1" and device["name"] in seen["trip"] and "1,250 ppm" in seen["trip"]
    assert "would not have fired" in seen["quiet"]
    assert "Rule added" in seen["added"] and "above 1,000 ppm" in seen["added"]
    assert "above 1,000 ppm for 5 min; clears at 900 ppm" in seen["row"] and device["name"] in seen["row"]
    assert await test_db.fetchval("SELECT count(*) FROM threshold_rules WHERE metric = $1", metric) == 0
    assert [r["action"] for r in await test_db.fetch(
        "SELECT action FROM audit_log WHERE entity = 'threshold_rule' ORDER BY id")] == ["created", "deleted"]
    assert seen["errors"] == ""


async def test_admin_edits_the_sla_policy_with_inline_validation(hub, hub_campus, test_db):
    base = f"http://127.0.0.1:{hub.web_port}"
    seen: dict[str, str] = {}

    async def script() -> None:
        async with chromium() as browser:
            page = await browser.new_page()
            await page.set_viewport_size(DESKTOP)
            await log_in(page, base, "admin", "campushub")
            await page.goto(f"{base}/settings/tickets")
            seen["defaults"] = await page.locator("#policy-changed").inner_text()
            await page.fill("#within-P0", "0")
            await page.click("#policy-save")
            seen["field"] = await _in_viewport(page.locator("#within-P0-error"))
            seen["refused"] = await _in_viewport(page.locator("#policy-feedback.feedback-error"))
            await page.fill("#within-P0", "2")
            await page.select_option("#within-unit-P0", "3600")
            await page.fill("#close-P1", "45")
            await page.check("#never-P4")
            await page.click("#policy-save")
            seen["saved"] = await _in_viewport(page.locator("#policy-feedback.feedback-success"))
            seen["field_after"] = str(await page.locator("#within-P0-error").is_visible())
            await page.reload()
            seen["p0"] = await page.input_value("#within-P0") + " " + await page.input_value("#within-unit-P0")
            seen["changed"] = await page.locator("#policy-changed").inner_text()

    await run_in_browser_thread(script)
    assert "built-in defaults" in seen["defaults"]
    assert seen["field"] == "Between 1 min and 365 days." and "Not saved" in seen["refused"]
    assert "Policy saved" in seen["saved"] and "P0 within 2 h" in seen["saved"] and seen["field_after"] == "False"
    admin_name = await test_db.fetchval("SELECT display_name FROM users WHERE username = 'admin'")
    assert seen["p0"] == "2 3600" and seen["changed"].endswith(f"by {admin_name}.")
    rows = {r["priority"]: (r["resolve_within_s"], r["auto_close_after_s"])
            for r in await test_db.fetch("SELECT * FROM ticket_sla_policy")}
    assert rows["P0"][0] == 7200 and rows["P1"][1] == 2700 and rows["P4"][1] is None
