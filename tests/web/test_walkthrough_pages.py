"""What a new user trips over (issue 16's walkthrough): alarm types in words on the ops pages, and a
course's teaching pages linked to each other (web/templates/_course_links.html)."""
from __future__ import annotations

import html as html_lib
import json
import re

from test_devices_api import _alarm
from test_grades_api import grades  # noqa: F401 - the fixture: c1 in a running term with a weighted quiz and exam
from web_helpers import page_login


async def test_the_room_page_words_alarm_types_and_hands_ops_js_the_tables(client, world, db):
    await _alarm(db, world.device, state="active_unacked", type_="co2_high")
    await page_login(client, world.username("ops"))
    page = await (await client.get(f"/ops/rooms/{world.room}")).get_data(as_text=True)
    assert "CO₂ too high</span>" in page and ">co2_high<" not in page
    tables = json.loads(html_lib.unescape(re.search(
        r'<script type="application/json" id="alarm-words">(.*?)</script>', page, re.S).group(1)))
    assert tables["types"]["telemetry_anomaly"] == "Unusual readings"
    assert tables["states"]["active_unacked"] == "Active, not acknowledged"


async def test_a_courses_pages_link_to_each_other_and_grades_needs_no_term(client, world, grades):  # noqa: F811
    c1 = world.courses["c1"]
    await page_login(client, world.username("fac1"))
    for path in (f"/faculty/syllabus?course_id={c1}", f"/faculty/gradebook?course_id={c1}"):
        page = await (await client.get(path)).get_data(as_text=True)
        assert f'href="/faculty/grades?course_id={c1}"' in page, path
    r = await client.get(f"/faculty/grades?course_id={c1}")  # the link carries no term: the newest is shown
    page = await r.get_data(as_text=True)
    assert r.status_code == 200 and f'data-term-id="{grades.now_term}"' in page
    assert f'href="/faculty/syllabus?course_id={c1}"' in page and f'href="/faculty/gradebook?course_id={c1}"' in page
    assert (await client.get("/faculty/grades?course_id=no-such-course")).status_code == 404
