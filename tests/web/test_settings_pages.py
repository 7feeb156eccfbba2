"""The settings pages as rendered: choices by name (never typed ids), and the SLA policy read-only for ops."""
from __future__ import annotations

import json
import re

from web_helpers import page_login


async def test_alarm_rules_page_offers_rooms_by_name_and_units(client, world):
    await page_login(client, world.username("ops"))
    html = await (await client.get("/settings/thresholds")).get_data(as_text=True)
    assert f'<option value="{world.room}">Room {world.suffix}</option>' in html
    choices = json.loads(re.search(r'<script type="application/json" id="threshold-choices">(.*?)</script>', html,
                                   re.S).group(1))
    assert choices["units"]["co2"] == "ppm" and choices["max_duration_s"] == 7 * 86400
    assert {"id": world.room, "name": f"Room {world.suffix}", "building": "Main",
            "room_type": "lecture_hall"} in choices["rooms"]


async def test_sla_policy_page_is_read_only_for_ops_and_editable_for_admins(client, world):
    await page_login(client, world.username("ops"))
    html = await (await client.get("/settings/tickets")).get_data(as_text=True)
    assert 'id="policy-read-only"' in html and 'id="policy-save"' not in html
    assert re.search(r'<input id="within-P0"[^>]*disabled', html)
    await page_login(client, world.username("admin"))
    html = await (await client.get("/settings/tickets")).get_data(as_text=True)
    assert 'id="policy-save"' in html and 'id="policy-read-only"' not in html
    assert not re.search(r'<input id="within-P0"[^>]*disabled', html)


async def test_webhooks_page_lists_the_notification_kinds_in_words(client, world):
    await page_login(client, world.username("admin"))
    html = await (await client.get("/settings/webhooks")).get_data(as_text=True)
    assert '<input type="checkbox" name="kinds" value="attendance_warning"> attendance warning' in html
