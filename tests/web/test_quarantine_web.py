"""The device page's quarantine panel and the release route's refusals without a running hub
(the release itself, through a real hub and broker: tests/hub/test_quarantine.py)."""
from __future__ import annotations

from web_helpers import bearer, page_login


async def test_the_device_page_offers_a_release_only_while_quarantined(client, world, db):
    await page_login(client, world.username("ops"))
    page = await (await client.get(f"/ops/devices/{world.device}")).get_data(as_text=True)
    assert 'id="quarantine-release"' not in page
    await db.execute(
        "INSERT INTO device_quarantines (device_id, reason, since, until, cooldown_s)"
        " VALUES ($1, 'rate limited: more than 50 events/s', now(), now() + interval '5 minutes', 300)", world.device)
    page = await (await client.get(f"/ops/devices/{world.device}")).get_data(as_text=True)
    assert "Quarantined at the broker" in page and 'id="quarantine-release"' in page
    assert "rate limited: more than 50 events/s" in page
    await db.execute("UPDATE device_quarantines SET released_at = now(), released_by = 'x' WHERE device_id = $1",
                     world.device)
    page = await (await client.get(f"/ops/devices/{world.device}")).get_data(as_text=True)
    assert 'id="quarantine-release"' not in page


async def test_release_refuses_an_unknown_device_and_says_when_no_hub_runs(client, world):
    ops = await bearer(client, world.username("ops"))
    unknown = await client.post("/api/v1/devices/no-such-device/release", json={}, headers=ops)
    assert unknown.status_code == 404
    # The test app has no hub: its WebContext's release_quarantine raises LookupError.
    refused = await client.post(f"/api/v1/devices/{world.device}/release", json={}, headers=ops)
    assert (refused.status_code, (await refused.get_json())["error"]["code"]) == (503, "unavailable")
