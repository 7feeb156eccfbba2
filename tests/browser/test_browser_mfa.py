"""In a real browser, on a hub that requires MFA of admins (as `serve` does): the admin logs in with a
password, is sent to enrol, scans nothing but reads the shown key (the test computes the codes with pyotp),
confirms, gets recovery codes, logs out, and logs in again with password + code."""
from __future__ import annotations

import dataclasses
import time

import pyotp
import pytest
from support.browser_helpers import chromium, run_in_browser_thread

from hub.core.config import Settings
from hub.db.seed import DEMO_PASSWORD


@pytest.fixture
def hub_settings(hub_settings: Settings) -> Settings:
    return dataclasses.replace(hub_settings, mfa_optional_demo=False)


async def test_admin_enrols_totp_then_logs_in_with_a_code(hub, hub_campus, test_db, tmp_path):
    base = f"http://127.0.0.1:{hub.web_port}"
    admin = next(login for login in hub_campus.logins if login.role == "admin")
    checkpoints: dict[str, str] = {}

    async def script() -> None:
        async with chromium() as browser:
            page = await browser.new_page()
            await page.goto(f"{base}/login")
            await page.fill("#username", admin.username)
            await page.fill("#password", DEMO_PASSWORD)
            await page.click("#login-submit")
            await page.wait_for_url(f"{base}/account/mfa")
            checkpoints["required"] = await page.locator("#mfa-required").inner_text()
            checkpoints["admin_before"] = str((await page.request.get(f"{base}/api/v1/devices")).status)

            await page.click("#mfa-start")
            await page.locator("#mfa-qr[src^='data:image/svg+xml']").wait_for()
            secret = (await page.locator("#mfa-secret").inner_text()).strip()
            checkpoints["secret"] = secret
            await page.fill("#mfa-confirm-code", pyotp.TOTP(secret).now())
            await page.click("#mfa-confirm")
            await page.locator("#mfa-recovery").wait_for(state="visible")
            checkpoints["codes"] = str(await page.locator("#mfa-recovery-codes li").count())
            await page.screenshot(path=str(tmp_path / "mfa-enrolled.png"), full_page=True)
            checkpoints["admin_after"] = str((await page.request.get(f"{base}/api/v1/devices")).status)

            await page.click("#logout")
            await page.wait_for_url(lambda url: "/login" in url)
            await page.fill("#username", admin.username)
            await page.fill("#password", DEMO_PASSWORD)
            await page.click("#login-submit")
            await page.locator("#mfa-form").wait_for()
            # The enrolment used this 30 s step's code: the next step's is accepted (clock drift) and new.
            await page.fill("#code", pyotp.TOTP(secret).at(time.time() + 30))
            await page.click("#mfa-submit")
            await page.wait_for_url(f"{base}/admin")
            checkpoints["home"] = page.url
            checkpoints["admin_page"] = str((await page.request.get(f"{base}/admin")).status)

    await run_in_browser_thread(script)
    assert "requires two-factor" in checkpoints["required"]
    assert checkpoints["admin_before"] == "403"
    assert checkpoints["codes"] == "10"
    assert checkpoints["admin_after"] == "200"
    assert checkpoints["admin_page"] == "200"
    user_id = await test_db.fetchval("SELECT id FROM users WHERE username = $1", admin.username)
    assert await test_db.fetchval(
        "SELECT confirmed_at IS NOT NULL FROM user_mfa WHERE user_id = $1", user_id)
    actions = [r["action"] for r in await test_db.fetch(
        "SELECT action FROM audit_log WHERE entity = 'mfa' AND entity_id = $1", user_id)]
    assert actions == ["enrolled"]
