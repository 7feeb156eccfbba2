"""In a real browser: the ops console shows a device going offline live, an alarm is acknowledged
from the alarm list, and a new ticket lands on the board, all without a reload."""
from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading

import trio
from support.browser_helpers import chromium, run_in_browser_thread
from support.hub_helpers import eventually

from hub.db.seed import DEMO_PASSWORD


async def _online(db, device_id: str, online: bool):
    row = await db.fetchrow("SELECT online, reason FROM device_health WHERE device_id = $1", device_id)
    return row if row is not None and row["online"] is online else None


async def test_console_shows_a_device_going_offline_and_acks_its_alarm(hub, hub_settings, hub_campus, test_db,
                                                                      tmp_path):
    device = hub_campus.devices[0]
    base = f"http://127.0.0.1:{hub.web_port}"
    config = tmp_path / "agent.toml"
    config.write_text(
        f'device_id = "{device.device_id}"\nroom_id = "{device.room_id}"\nalg = "{device.alg}"\n'
        f'signing_key = "{device.signing_key.hex()}"\nmqtt_url = "{hub_settings.mqtt_url}"\n'
        f'topic_prefix = "{hub_settings.topic_prefix}"\noutbox = "{tmp_path / "outbox.sqlite"}"\n')
    agent = await trio.lowlevel.open_process(
        [sys.executable, "-m", "hub", "edge-agent", "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    watching, killed = threading.Event(), threading.Event()
    dot = f'a.device[data-device-id="{device.device_id}"]'
    tile = f'article.tile[data-room-id="{device.room_id}"]'
    page_errors: list[str] = []

    async def ops_watches_console() -> dict:
        """Asyncio, in the browser thread."""
        async with chromium(phone=True) as browser:
            page = await browser.new_page()
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            await page.goto(f"{base}/login")
            await page.fill("#username", "ops")
            await page.fill("#password", DEMO_PASSWORD)
            await page.click("#login-submit")
            await page.wait_for_url(f"{base}/ops**")
            await page.goto(f"{base}/ops")
            await page.locator('#live-status[data-state="live"]').wait_for(timeout=10_000)
            await page.locator(f'{dot}.device-online[data-health="ok"]').wait_for(timeout=15_000)
            # Filters and search hide the rooms that do not match, without a round trip.
            await page.fill("#filter-search", device.device_id)
            assert await page.locator("article.tile:not([hidden])").count() == 1
            await page.evaluate("window.__sameDocument = true")  # gone if the page reloads
            watching.set()
            assert await wait_in_thread(killed)
            await page.locator(f'{dot}.device-offline[data-health="offline"]').wait_for(timeout=10_000)
            await page.locator(f'{tile}[data-health="offline"]').wait_for(timeout=10_000)  # the room's worst
            assert await page.locator(f"{tile} .tile-state").text_content() == "offline"
            assert await page.evaluate("window.__sameDocument === true")
            await page.screenshot(path=str(tmp_path / "grid.png"), full_page=True)

            await page.goto(f"{base}/ops/alarms")
            row = page.locator(f'#alarms tr[data-state="active_unacked"]:has(a:text-is("{device.device_id}"))')
            await row.wait_for(timeout=10_000)
            alarm_id = await row.get_attribute("data-alarm-id")
            await row.locator('button[data-action="ack"]').click()
            await page.locator(f'#alarms tr[data-alarm-id="{alarm_id}"][data-state="active_acked"]').wait_for(
                timeout=10_000)
            await page.screenshot(path=str(tmp_path / "alarms.png"), full_page=True)

            await page.goto(f"{base}/ops/tickets")
            await page.locator('#live-status[data-state="live"]').wait_for(timeout=10_000)
            await page.evaluate("window.__sameDocument = true")
            created = await page.evaluate(
                """async (alarmId) => {
                    const r = await fetch('/api/v1/tickets', {method: 'POST', credentials: 'same-origin',
                        headers: {'Content-Type': 'application/json'},
                        body: JSON.stringify({title: 'Camera went offline', alarm_id: Number(alarmId)})});
                    return [r.status, await r.json()];
                }""", alarm_id)
            assert created[0] == 201, created
            ticket = created[1]
            await page.locator(
                f'section.column[data-state="open"] article.ticket[data-ticket-id="{ticket["id"]}"]').wait_for(
                timeout=10_000)
            assert await page.evaluate("window.__sameDocument === true")
            await page.screenshot(path=str(tmp_path / "board.png"), full_page=True)
            return {"alarm_id": int(alarm_id), "ticket": ticket}

    def wait_in_thread(event: threading.Event):
        return asyncio.get_running_loop().run_in_executor(None, event.wait, 30)

    result: list[dict] = []
    try:
        await eventually(lambda: _online(test_db, device.device_id, True), timeout=20)
        async with trio.open_nursery() as nursery:
            async def browse() -> None:
                try:
                    result.append(await run_in_browser_thread(ops_watches_console))
                finally:
                    watching.set()

            nursery.start_soon(browse)
            assert await trio.to_thread.run_sync(watching.wait, 60), "the console never came up"
            agent.send_signal(signal.SIGKILL)
            await agent.wait()
            killed.set()
    finally:
        if agent.returncode is None:
            agent.send_signal(signal.SIGKILL)
            await agent.wait()
        killed.set()
    assert result, "the browser script failed"
    assert page_errors == []
    state = await test_db.fetchval("SELECT state FROM alarms WHERE id = $1", result[0]["alarm_id"])
    assert state == "active_acked"
    assert result[0]["ticket"]["device_id"] == device.device_id
