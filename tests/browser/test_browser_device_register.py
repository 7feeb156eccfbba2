"""The device registration page, in Chromium on a phone-sized screen, against the real hub."""
from __future__ import annotations

import tomllib
from pathlib import Path

from support.browser_helpers import chromium, console_errors, open_menu, pick, run_in_browser_thread


async def test_ops_registers_a_device_and_copies_its_credentials_on_a_phone(hub, hub_campus, test_db, tmp_path: Path):
    base = f"http://127.0.0.1:{hub.web_port}"
    room = hub_campus.sessions[0].room_id

    async def register() -> dict:
        async with chromium(phone=True) as browser:
            page = await browser.new_page()
            problems = console_errors(page)
            await page.goto(f"{base}/login")
            await page.fill("#username", "ops")
            await page.fill("#password", "campushub")
            await page.click("#login-submit")
            await page.wait_for_url(f"{base}/ops**")
            await open_menu(page)  # the nav folds behind the Menu button on a phone
            await page.click('a[href="/devices/register"]')
            await page.fill("#device_id", "phone-reg-1")
            await pick(page, "#room_id", room)
            await page.select_option("#alg", "ed25519")
            await page.click("#register-submit")
            await page.locator("#credentials:not([hidden])").wait_for(timeout=10_000)
            shown = {
                "toml": await page.locator("#cred-toml").text_content(),
                "password": await page.locator("#cred-password").text_content(),
                "hub_key_visible": await page.locator("#cred-hub-row").is_visible(),
                # Nothing wider than the phone: no sideways scrolling.
                "overflow": await page.evaluate("document.documentElement.scrollWidth - window.innerWidth"),
            }
            # A second registration with the same id is refused with a readable message.
            await page.fill("#device_id", "phone-reg-1")
            await pick(page, "#room_id", room)
            await page.click("#register-submit")
            await page.locator("#register-error:not([hidden])").wait_for(timeout=10_000)
            shown["error"] = await page.locator("#register-error").text_content()
            await page.screenshot(path=str(tmp_path / "register.png"), full_page=True)
            shown["problems"] = [p for p in problems if "409" not in p]  # the refused POST is logged by Chromium
            return shown

    shown = await run_in_browser_thread(register)
    config = tomllib.loads(shown["toml"])
    assert config["device_id"] == "phone-reg-1" and config["alg"] == "ed25519"
    assert config["password"] == shown["password"] and shown["hub_key_visible"]
    assert shown["overflow"] <= 0, shown["overflow"]
    assert "already exists" in shown["error"]
    assert shown["problems"] == []  # e.g. no CSP violations
    row = await test_db.fetchrow("SELECT room_id, alg, registered_by FROM devices WHERE id = 'phone-reg-1'")
    assert (row["room_id"], row["alg"], row["registered_by"]) == (room, "ed25519", "usr-ops")
