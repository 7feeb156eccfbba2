"""In a real browser: a new faculty member opens the activation link, sees the password policy explained
as they type (too short, too close to their name, then good), sets the password and logs in with it;
then changes it on the password page."""
from __future__ import annotations

import pytest
from support.browser_helpers import chromium, run_in_browser_thread

from hub.db.accounts import issue_activation
from hub.db.users import NewAccount, create_user

pytestmark = pytest.mark.integration

GOOD = "orbit lantern quiet mango"
BETTER = "saffron tugboat window seventeen"


@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
async def test_activation_with_live_feedback_then_password_change(hub, hub_campus, test_db, phone):
    username = f"priya.nair.{'p' if phone else 'd'}"
    account = await create_user(test_db, NewAccount(username=username, display_name="Priya Nair", role="faculty"),
                                actor="test")
    issued = await issue_activation(test_db, user_id=account.id, actor="test")
    base = f"http://127.0.0.1:{hub.web_port}"
    seen: dict[str, str] = {}

    async def script() -> None:
        async with chromium(phone=phone) as browser:
            page = await browser.new_page()
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url) if r.url.endswith("/password-check") else None)
            await page.goto(f"{base}/activate?code={issued.code}")
            verdict = page.locator("#password-verdict")
            await page.locator("#new-password").press_sequentially("short", delay=20)
            await verdict.filter(has_text="at least 12").wait_for(timeout=10_000)
            seen["short"] = await verdict.inner_text()
            await page.fill("#new-password", "")
            await page.locator("#new-password").press_sequentially("priya.nair.2024!", delay=20)
            await verdict.filter(has_text="too close").wait_for(timeout=10_000)
            seen["personal"] = await verdict.inner_text()
            seen["checks"] = str(len(requests))
            await page.fill("#new-password", GOOD)
            await verdict.filter(has_text="Good password").wait_for(timeout=10_000)
            await page.click("#password-submit")
            await page.locator("#password-done").wait_for(state="visible", timeout=10_000)

            await page.goto(f"{base}/login")
            await page.fill("#username", username)
            await page.fill("#password", GOOD)
            await page.click("#login-submit")
            await page.wait_for_url(lambda url: "/login" not in url, timeout=10_000)
            seen["landed"] = page.url

            await page.goto(f"{base}/account/password")
            await page.fill("#current-password", GOOD)
            await page.fill("#new-password", BETTER)
            await page.locator("#password-verdict").filter(has_text="Good password").wait_for(timeout=10_000)
            await page.click("#password-submit")
            await page.locator("#password-done").wait_for(state="visible", timeout=10_000)

    await run_in_browser_thread(script)
    assert seen["short"] == "Use at least 12 characters (5 so far)."
    assert seen["personal"] == "The password is too close to your username, name or email."
    # Debounced: far fewer checks than the 21 characters typed.
    assert 1 <= int(seen["checks"]) < 10, seen["checks"]
    assert seen["landed"].endswith("/faculty")
    row = await test_db.fetchrow("SELECT password_hash, must_change_password FROM users WHERE id = $1", account.id)
    assert row["password_hash"] and not row["must_change_password"]
    actions = [r["action"] for r in await test_db.fetch(
        "SELECT action FROM audit_log WHERE entity = 'account' AND entity_id = $1 ORDER BY id", account.id)]
    assert actions == ["code_issued", "activated", "password_changed"]
