"""In a real browser at desktop size (1366×800), the ops console of issue 15: the overview's room tiles are
coloured by their worst device and drill down to the room and the device; the device page shows its kind and
its commands' names in words (web/wording.py); the device's telemetry chart keeps its axes inside its box;
the ticket board fits its box with Resolved and Closed visible; the ticket dialog's "Close" keeps the ticket
and "Cancel ticket" asks first; alarms are acknowledged together from the keyboard."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from support.browser_helpers import DESKTOP, chromium_browser, log_in, new_sized_context, run_in_browser_thread

from hub.db import run_with_database
from hub.db.seed import DEMO_PASSWORD
from web.wording import COMMAND_STATUS_WORDS, COMMAND_WORDS, DEVICE_KIND_WORDS

_INSIDE = """([inner, outer]) => {
  const o = document.querySelector(outer).getBoundingClientRect();
  return Array.from(document.querySelectorAll(inner)).map((n) => {
    const r = n.getBoundingClientRect();
    return {text: n.textContent, inside: r.left >= o.left - 1 && r.right <= o.right + 1 && r.top >= o.top - 1
            && r.bottom <= o.bottom + 1, w: r.width};
  });
}"""


async def _seed(db, campus) -> dict:
    """Before the hub starts (its device actors load alarms and health at boot): every device online, one
    with a critical alarm (its room's tile turns red), an hour of CO2 readings and an answered command (not
    outstanding, so the dispatcher leaves it alone), and an open ticket."""
    now = datetime.now(timezone.utc)
    await db.execute("INSERT INTO device_health (device_id, online, last_seen, last_change) SELECT id, true, $1, $1"
                     " FROM devices ON CONFLICT (device_id) DO UPDATE SET online = true, last_seen = $1", now)
    sick = campus.devices[0]
    await db.execute(
        "INSERT INTO alarms (device_id, room_id, type, severity, state, raised_at, value, message, details)"
        " SELECT $1, room_id, 'co2_high', 'critical', 'active_unacked', $2, 1600, 'co2 1600 ppm above 1500', '{}'"
        " FROM devices WHERE id = $1", sick.device_id, now)
    for i in range(11):
        await db.execute("INSERT INTO sensor_readings (event_id, device_id, metric, value, unit, device_ts)"
                         " VALUES ($1, $2, 'co2', $3, 'ppm', $4)",
                         uuid.uuid4(), sick.device_id, 600.0 + 20 * i, now - timedelta(minutes=55 - 5 * i))
    command = uuid.uuid4()  # the hub may send the device a time_sync of its own: this one is found by its id
    await db.execute(
        "INSERT INTO device_commands (id, device_id, name, status, ttl_s, ack_timeout_s, issued_by, created_at,"
        " sent_at, expires_at, acked_at, detail) VALUES ($1, $2, 'time_sync', 'acked', 60, 30, 'ops', $3, $3, $4, $3,"
        " 'offset_ms=12')", command, sick.device_id, now - timedelta(minutes=2), now + timedelta(minutes=1))
    ticket = await db.fetchval(
        "INSERT INTO tickets (title, room_id, priority, state, source, sla_due_at, created_at, updated_at)"
        " VALUES ('Projector flickers', $1, 'P3', 'open', 'report', $2, $3, $3) RETURNING id",
        sick.room_id, now + timedelta(days=7), now)
    kind = await db.fetchval("SELECT kind FROM devices WHERE id = $1", sick.device_id)
    return {"sick": sick, "ticket": ticket, "command": command, "kind": kind,
            "well_room": next(d.room_id for d in campus.devices if d.room_id != sick.room_id)}


@pytest.fixture
def console_world(hub_settings, hub_campus) -> dict:
    return run_with_database(hub_settings.database_url, lambda db: _seed(db, hub_campus))


async def test_console_overview_device_chart_board_and_alarms_at_desktop_size(console_world, hub, hub_campus, test_db,
                                                                              tmp_path):
    base = f"http://127.0.0.1:{hub.web_port}"
    sick, ticket, well_room = console_world["sick"], console_world["ticket"], console_world["well_room"]
    command_id = console_world["command"]

    async def browse() -> dict:
        async with chromium_browser() as browser:
            context = await new_sized_context(browser, phone=False)
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await log_in(page, base, "ops", DEMO_PASSWORD)
            await page.goto(f"{base}/ops")
            await page.locator('#live-status[data-state="live"]').wait_for(timeout=10_000)
            sick_tile = page.locator(f'article.tile[data-room-id="{sick.room_id}"]')
            well_tile = page.locator(f'article.tile[data-room-id="{well_room}"]')
            await sick_tile.and_(page.locator('[data-health="critical"]')).wait_for(timeout=10_000)
            colours = {
                "sick": await sick_tile.evaluate("t => getComputedStyle(t).backgroundColor"),
                "well": await well_tile.evaluate("t => getComputedStyle(t).backgroundColor"),
                "well_health": await well_tile.get_attribute("data-health"),
                "tiles": await page.locator("article.tile").count(),
            }
            await page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)
            # Drill down: tile → room → device.
            await sick_tile.locator("h4 a").click()
            await page.wait_for_url(f"{base}/ops/rooms/{sick.room_id}")
            await page.locator(f'#devices article.device[data-device-id="{sick.device_id}"]').wait_for()
            await page.locator(f'#devices a[href="/ops/devices/{sick.device_id}"]').click()
            await page.wait_for_url(f"{base}/ops/devices/{sick.device_id}")
            await page.locator("#telemetry-chart svg text.y-tick").first.wait_for(timeout=10_000)
            chart = {
                "labels": await page.evaluate(_INSIDE, ["#telemetry-chart svg text", "#telemetry-chart svg"]),
                "svg": await page.evaluate(_INSIDE, ["#telemetry-chart svg", "#telemetry-chart"]),
                "uptime": await page.locator("dd.uptime").text_content(),
            }
            command = page.locator(f'#device-commands tbody tr[data-command-id="{command_id}"]')
            await command.wait_for(timeout=10_000)
            words = {"name": await command.get_attribute("data-name"),
                     "kind": await page.locator("#device .kind").text_content(),
                     "command": await command.locator("td").nth(0).text_content(),
                     "status": await command.locator("td").nth(1).text_content(),
                     "menu": await page.locator("#command-name option:checked").text_content()}
            await page.screenshot(path=str(tmp_path / "device.png"), full_page=True)

            await page.goto(f"{base}/ops/tickets")
            await page.locator('#live-status[data-state="live"]').wait_for(timeout=10_000)
            board = await page.evaluate("""() => { const b = document.getElementById('board');
                const cols = Array.from(b.querySelectorAll('section.column')).map((c) => {
                  const r = c.getBoundingClientRect(), o = b.getBoundingClientRect();
                  return {state: c.dataset.state, inside: r.left >= o.left - 1 && r.right <= o.right + 1,
                          visible: r.right <= window.innerWidth && r.width > 100}; });
                return {overflow: b.scrollWidth - b.clientWidth, cols}; }""")
            await page.screenshot(path=str(tmp_path / "board.png"), full_page=True)
            card = page.locator(f'article.ticket[data-ticket-id="{ticket}"] a.title')
            await card.click()
            dialog = page.locator("#ticket-dialog")
            await dialog.locator('button[data-cancel="true"]').wait_for()
            await dialog.locator("#td-close").click()  # "Close" only closes the window
            closed_dialog = not await dialog.evaluate("d => d.open")
            await card.click()
            await dialog.locator('button[data-cancel="true"]').click()  # no reason yet: refused, nothing sent
            refused = await dialog.locator("#td-error").text_content()
            await dialog.locator("#td-comment").fill("Reported twice")
            await dialog.locator('button[data-cancel="true"]').click()
            await page.locator("#confirm-dialog-keep").click()  # "Keep ticket": still nothing sent
            state_after = await page.evaluate(
                f"fetch('/api/v1/tickets/{ticket}', {{credentials: 'same-origin'}}).then(r => r.json()).then(t => t.state)")

            await page.goto(f"{base}/ops/alarms")
            first = page.locator("#alarms tr.alarm-row").first
            await first.wait_for(timeout=10_000)
            await page.locator("body").press("j")
            await page.locator("body").press("x")
            selected = await page.locator("#alarms-selected").text_content()
            await page.locator("body").press("Shift+A")
            feedback = page.locator("#alarms-ack-selected + .feedback")
            await feedback.wait_for(timeout=10_000)
            shortcuts = await page.locator(".shortcuts").text_content()
            return {"errors": errors, "colours": colours, "chart": chart, "words": words, "board": board,
                    "closed_dialog": closed_dialog, "refused": refused, "state_after": state_after, "selected": selected,
                    "feedback": await feedback.text_content(), "shortcuts": shortcuts}

    result = await run_in_browser_thread(browse)
    assert result["errors"] == []
    colours = result["colours"]
    assert colours["tiles"] == len({d.room_id for d in hub_campus.devices}) and colours["well_health"] == "ok"
    assert colours["sick"] != colours["well"]
    labels = result["chart"]["labels"]
    assert len(labels) >= 6 and all(label["inside"] for label in labels), labels  # ticks and both axis titles
    assert any("(ppm)" in label["text"] for label in labels)
    assert all(box["inside"] for box in result["chart"]["svg"])
    assert result["chart"]["uptime"].strip() != "" and not result["chart"]["uptime"].strip().isdigit()
    assert result["words"] == {"name": "time_sync", "kind": DEVICE_KIND_WORDS[console_world["kind"]],
                               "command": COMMAND_WORDS["time_sync"], "status": COMMAND_STATUS_WORDS["acked"],
                               "menu": COMMAND_WORDS["time_sync"]}
    board = result["board"]
    assert DESKTOP["width"] == 1366 and board["overflow"] <= 0, board
    assert all(c["inside"] and c["visible"] for c in board["cols"]), board
    assert [c["state"] for c in board["cols"]][-2:] == ["resolved", "closed"]
    assert result["closed_dialog"] and "reason" in result["refused"] and result["state_after"] == "open"
    assert result["selected"] == "1" and result["feedback"].startswith("1 acknowledged")
    assert "acknowledge" in result["shortcuts"]
    assert await test_db.fetchval("SELECT count(*) FROM alarms WHERE state = 'active_acked'") == 1
