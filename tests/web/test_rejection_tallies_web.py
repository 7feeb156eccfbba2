"""The console and API after bounded intake: counts include rejections only tallied, rows carry size and hash."""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

from web_helpers import bearer, page_login

from hub.db.campus_counts import overview_counts


async def _tally(db, world, suppressed: int) -> datetime:
    # Newest of the run's tallies (the database is shared by the run's tests): the page lists the latest.
    last_seen = datetime.now(timezone.utc) + timedelta(days=1)
    await db.execute(
        "INSERT INTO rejection_tallies (source, reason, window_start, offered, suppressed, first_seen, last_seen)"
        " VALUES ($1, $2, date_trunc('minute', $3::timestamptz), $4, $5, $3, $3)",
        world.device, world.reasons["bad_sig"], last_seen, suppressed + 60, suppressed)
    return last_seen


async def test_admin_page_counts_and_lists_rejections_that_were_only_tallied(client, world, db):
    await _tally(db, world, suppressed=40)
    await page_login(client, world.username("admin"))
    admin = await (await client.get("/admin")).get_data(as_text=True)
    reason = world.reasons["bad_sig"]
    # Three kept rows (tests/web/conftest.py) plus 40 only counted.
    # An unknown code is shown as itself (web/wording.py); a known one in words.
    assert f'<tr data-reason="{reason}"><td>Refused ({reason}).</td><td class="n">43</td></tr>' in admin
    assert 'id="suppressed-rejections"' in admin
    assert (f'<td>{world.device}</td><td data-reason="{reason}">Refused ({reason}).</td><td class="n">100</td>'
            f'<td class="n">40</td>') in admin


async def test_api_rejections_report_the_whole_payloads_size_and_hash(client, world):
    body = await (await client.get(f"/api/v1/rejections?reason={world.reasons['too_big']}",
                                   headers=await bearer(client, world.username("admin")))).get_json()
    [row] = body["items"]
    # A row written whole (by hand, no size or hash stored): both derived from the payload itself.
    assert (row["payload_bytes"], row["payload_sha256"]) == (6, hashlib.sha256(b"abcdef").hexdigest())


async def test_overview_rejection_count_includes_the_ones_only_tallied(db, world):
    before = (await overview_counts(db)).rejections
    await _tally(db, world, suppressed=25)
    assert (await overview_counts(db)).rejections == before + 25
