"""Insights API: standings (percentage, max reachable, eligibility), reports + CSV, series, condonation; ownership.

World (tests/web/conftest.py): fac1 teaches c1 (stu1, stu2), fac2 teaches c2 (stu1, stu3). In c1, past1 is
closed (stu1 present, stu2 without a record = absent) and live1 is running (stu1 present; stu2 not yet).
"""
from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta

from web_helpers import bearer, page_login


async def add_closed_sessions(db, world, course: str, marks: dict[str, list[str | None]]) -> list[str]:
    """Closed sessions of ``course`` in the past; ``marks[student_key][i]`` is the status in session i (None: no row)."""
    count = max(len(v) for v in marks.values())
    ids = [f"extra{i}_{uuid.uuid4().hex[:8]}" for i in range(count)]

    async def work(conn) -> None:
        await conn.executemany(
            "INSERT INTO class_sessions (id, course_id, room_id, starts_at, ends_at, status)"
            " VALUES ($1, $2, $3, $4, $5, 'closed')",
            [(sid, world.courses[course], world.room, world.now - timedelta(days=30 - i),
              world.now - timedelta(days=30 - i) + timedelta(hours=1)) for i, sid in enumerate(ids)],
        )
        await conn.executemany(
            "INSERT INTO attendance (session_id, student_id, status, source) VALUES ($1, $2, $3, 'manual')",
            [(ids[i], world.users[key], status) for key, statuses in marks.items()
             for i, status in enumerate(statuses) if status is not None],
        )

    await db.run(work, transaction=True)
    return ids


def course_of(body: dict, course_id: str) -> dict:
    return next(c for c in body["courses"] if c["course_id"] == course_id)


async def test_a_student_sees_their_percentage_max_reachable_and_band(client, world):
    headers = await bearer(client, world.username("stu2"))
    response = await client.get(f"/api/v1/students/{world.users['stu2']}/standing", headers=headers)
    assert response.status_code == 200
    c1 = course_of(await response.get_json(), world.courses["c1"])
    # past1 ended without a record: absent. live1 is running and stu2 has no record: still to come.
    assert c1["counts"] == {"present": 0, "late": 0, "absent": 1, "excused": 0, "held": 1, "remaining": 1}
    assert (c1["percentage"], c1["max_reachable"], c1["band"], c1["best_band"]) == (0.0, 50.0, "barred", "barred")
    assert c1["needed_for_eligible"] is None and c1["below_warning"] is True
    assert c1["rules"] == {"late_weight": 0.8, "warning_pct": 75.0, "eligible_pct": 75.0, "condonable_pct": 65.0,
                           "excused_counts": False}


async def test_a_record_in_a_live_session_counts_once_the_session_is_held(client, world, clock):
    headers = await bearer(client, world.username("stu1"))
    body = await (await client.get(f"/api/v1/students/{world.users['stu1']}/standing", headers=headers)).get_json()
    c1 = course_of(body, world.courses["c1"])
    # stu1 checked in to live1, which is still running: held (and counted) when it is over.
    assert c1["counts"]["present"] == 1 and c1["counts"]["held"] == 1 and c1["counts"]["remaining"] == 1
    assert (c1["percentage"], c1["eligibility"]) == (100.0, "eligible")
    c2 = course_of(body, world.courses["c2"])  # live2 running, no record: nothing counted yet
    assert (c2["percentage"], c2["max_reachable"], c2["band"]) == (None, 100.0, "eligible")
    clock.advance(3600)
    headers = await bearer(client, world.username("stu1"))  # the first token has expired meanwhile
    body = await (await client.get(f"/api/v1/students/{world.users['stu1']}/standing", headers=headers)).get_json()
    c1 = course_of(body, world.courses["c1"])
    assert c1["counts"]["present"] == 2 and c1["counts"]["held"] == 2 and c1["counts"]["remaining"] == 0


async def test_late_weight_and_excused_follow_the_course_rules(client, db, world):
    await add_closed_sessions(db, world, "c2", {"stu3": ["present", "late", "late", "excused"]})
    await db.execute("INSERT INTO course_rules (course_id, late_weight) VALUES ($1, 0.5)", world.courses["c2"])
    headers = await bearer(client, world.username("stu3"))
    body = await (await client.get(f"/api/v1/students/{world.users['stu3']}/standing", headers=headers)).get_json()
    c2 = course_of(body, world.courses["c2"])
    # (1 + 0.5 + 0.5) / 3, the excused session left out; live2 still to come.
    assert c2["percentage"] == 66.66 and c2["band"] == "condonable"
    assert c2["max_reachable"] == 75.0 and c2["needed_for_eligible"] == 1


async def test_a_student_can_never_see_another_students_figures(client, world):
    headers = await bearer(client, world.username("stu1"))
    for path in (f"/api/v1/students/{world.users['stu2']}/standing",
                 f"/api/v1/students/{world.users['stu2']}/courses/{world.courses['c1']}/series",
                 f"/api/v1/students/ghost_{world.suffix}/standing"):
        response = await client.get(path, headers=headers)
        assert response.status_code == 403, path
        assert (await response.get_json())["error"]["code"] == "forbidden"


async def test_faculty_see_only_the_courses_they_teach(client, world):
    fac2 = await bearer(client, world.username("fac2"))
    body = await (await client.get(f"/api/v1/students/{world.users['stu1']}/standing", headers=fac2)).get_json()
    assert [c["course_id"] for c in body["courses"]] == [world.courses["c2"]]
    assert (await client.get(f"/api/v1/students/{world.users['stu2']}/standing", headers=fac2)).status_code == 403
    series = f"/api/v1/students/{world.users['stu1']}/courses/{world.courses['c1']}/series"
    assert (await client.get(series, headers=fac2)).status_code == 403
    for path in (f"/api/v1/courses/{world.courses['c1']}/report", f"/api/v1/courses/{world.courses['c1']}/report.csv",
                 f"/api/v1/courses/{world.courses['c1']}/series"):
        assert (await client.get(path, headers=fac2)).status_code == 403, path
    admin = await bearer(client, world.username("admin"))
    missing = await client.get(f"/api/v1/courses/nope_{world.suffix}/report", headers=admin)
    assert missing.status_code == 404


async def test_course_report_json_and_csv_agree(client, db, world):
    await add_closed_sessions(db, world, "c1", {"stu1": ["present"] * 6, "stu2": ["present", "late", None, "absent",
                                                                               "present", "present"]})
    headers = await bearer(client, world.username("fac1"))
    response = await client.get(f"/api/v1/courses/{world.courses['c1']}/report", headers=headers)
    assert response.status_code == 200
    report = await response.get_json()
    assert report["course"]["course_id"] == world.courses["c1"]
    assert (report["total"], report["limit"], report["offset"]) == (2, 50, 0)
    rows = {i["student_id"]: i for i in report["items"]}
    stu2 = rows[world.users["stu2"]]
    # 3 present + 1 late (0.8) over 7 counted (past1 absent, one missing row absent, one absent).
    assert stu2["counts"] == {"present": 3, "late": 1, "absent": 3, "excused": 0, "held": 7, "remaining": 1}
    assert stu2["percentage"] == 54.28 and stu2["max_reachable"] == 60.0 and stu2["band"] == "barred"
    assert report["summary"] == {
        "students": 2, "sessions_held": 7, "average_percentage": round((100.0 + 54.28) / 2, 2),
        "bands": {"eligible": 1, "condonable": 0, "barred": 1}, "condoned": 0, "below_warning": 1,
    }
    response = await client.get(f"/api/v1/courses/{world.courses['c1']}/report.csv", headers=headers)
    assert response.status_code == 200 and response.content_type.startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    table = list(csv.DictReader(io.StringIO(await response.get_data(as_text=True))))
    by_id = {r["student_id"]: r for r in table}
    assert set(by_id) == set(rows)
    for student_id, item in rows.items():
        line = by_id[student_id]
        assert line["percentage"] == f"{item['percentage']:.2f}"
        assert line["max_reachable"] == f"{item['max_reachable']:.2f}"
        assert (line["band"], line["eligibility"], int(line["held"])) == (
            item["band"], item["eligibility"], item["counts"]["held"])
    page = await (await client.get(f"/api/v1/courses/{world.courses['c1']}/report?limit=1&offset=1",
                                   headers=headers)).get_json()
    assert page["total"] == 2 and len(page["items"]) == 1 and page["items"][0] == report["items"][1]


async def test_report_page_shows_the_same_figures(client, db, world):
    await add_closed_sessions(db, world, "c1", {"stu2": ["present", "late", "absent"]})
    headers = await bearer(client, world.username("fac1"))
    report = await (await client.get(f"/api/v1/courses/{world.courses['c1']}/report", headers=headers)).get_json()
    await page_login(client, world.username("fac1"))
    page = await client.get(f"/faculty/reports?course_id={world.courses['c1']}")
    assert page.status_code == 200
    html = await page.get_data(as_text=True)
    for item in report["items"]:
        assert f"{item['percentage']:.2f}%" in html
    fac2_page = await client.get(f"/faculty/reports?course_id={world.courses['c1']}")
    assert fac2_page.status_code == 200  # still fac1's session


async def test_bad_report_parameters_are_clear_errors(client, world):
    headers = await bearer(client, world.username("fac1"))
    base = f"/api/v1/courses/{world.courses['c1']}/report"
    for query, field in (("?section_id=nope", "section_id"), ("?limit=0", "limit"), ("?offset=-1", "offset")):
        response = await client.get(base + query, headers=headers)
        assert response.status_code == 400, query
        assert (await response.get_json())["error"]["field"] == field


async def test_series_tracks_the_cumulative_percentage(client, db, world):
    await add_closed_sessions(db, world, "c2", {"stu3": ["present", "absent", "late", None]})
    headers = await bearer(client, world.username("stu3"))
    response = await client.get(
        f"/api/v1/students/{world.users['stu3']}/courses/{world.courses['c2']}/series", headers=headers)
    body = await response.get_json()
    assert [p["status"] for p in body["points"]] == ["present", "absent", "late", "absent"]
    assert [p["percentage"] for p in body["points"]] == [100.0, 50.0, 60.0, 45.0]
    assert body["warning_pct"] == 75.0
    fac2 = await bearer(client, world.username("fac2"))
    course = await (await client.get(f"/api/v1/courses/{world.courses['c2']}/series", headers=fac2)).get_json()
    assert len(course["points"]) == 4  # live2 has not ended
    assert course["points"][1]["absent"] == 2  # stu3 absent, stu1 without a record


async def test_condonation_apply_decide_and_eligibility(client, db, world):
    # stu2 in c1: 7 present of 10 counted (past1 absent) = 70%: condonable.
    await add_closed_sessions(db, world, "c1", {"stu2": ["present"] * 7 + ["absent"] * 2})
    stu2 = await bearer(client, world.username("stu2"))
    stu1 = await bearer(client, world.username("stu1"))
    fac1 = await bearer(client, world.username("fac1"))
    fac2 = await bearer(client, world.username("fac2"))
    c1 = world.courses["c1"]

    refused = await client.post("/api/v1/condonations", json={"course_id": c1, "reason": "ill"}, headers=stu1)
    assert refused.status_code == 409 and (await refused.get_json())["error"]["code"] == "not_condonable"
    missing = await client.post("/api/v1/condonations", json={"course_id": c1}, headers=stu2)
    assert missing.status_code == 400 and (await missing.get_json())["error"]["field"] == "reason"

    response = await client.post("/api/v1/condonations", json={"course_id": c1, "reason": "Hospitalised"},
                                 headers=stu2)
    assert response.status_code == 201
    application = await response.get_json()
    assert (application["state"], application["percentage"], application["student_id"]) == (
        "pending", 70.0, world.users["stu2"])
    again = await client.post("/api/v1/condonations", json={"course_id": c1, "reason": "again"}, headers=stu2)
    assert again.status_code == 409

    fac_notes = await (await client.get("/api/v1/notifications", headers=fac1)).get_json()
    assert [n["kind"] for n in fac_notes["items"]] == ["condonation_requested"]

    listed = await (await client.get("/api/v1/condonations?state=pending", headers=fac1)).get_json()
    assert [a["id"] for a in listed["items"]] == [application["id"]]
    assert (await (await client.get("/api/v1/condonations", headers=fac2)).get_json())["total"] == 0
    assert (await (await client.get("/api/v1/condonations", headers=stu1)).get_json())["total"] == 0

    decision = f"/api/v1/condonations/{application['id']}/decision"
    assert (await client.post(decision, json={"decision": "approved"}, headers=fac2)).status_code == 403
    bad = await client.post(decision, json={"decision": "maybe"}, headers=fac1)
    assert bad.status_code == 400 and (await bad.get_json())["error"]["field"] == "decision"
    decided = await client.post(decision, json={"decision": "approved", "note": "Medical certificate seen."},
                                headers=fac1)
    assert decided.status_code == 200 and (await decided.get_json())["state"] == "approved"
    assert (await client.post(decision, json={"decision": "rejected"}, headers=fac1)).status_code == 409
    assert (await client.post("/api/v1/condonations/999999999/decision", json={"decision": "approved"},
                              headers=fac1)).status_code == 404

    standing = await (await client.get(f"/api/v1/students/{world.users['stu2']}/standing", headers=stu2)).get_json()
    c1_standing = course_of(standing, c1)
    assert (c1_standing["band"], c1_standing["eligibility"]) == ("condonable", "condoned")
    assert c1_standing["condonation"] == {"id": application["id"], "state": "approved"}
    notes = await (await client.get("/api/v1/notifications", headers=stu2)).get_json()
    assert notes["items"][0]["kind"] == "condonation_decided" and notes["items"][0]["body"] == "Medical certificate seen."


async def test_student_page_shows_standing_today_and_links(client, world):
    await page_login(client, world.username("stu1"))
    page = await client.get("/student")
    assert page.status_code == 200
    html = await page.get_data(as_text=True)
    assert "100.00%" in html and 'id="today"' in html and "/student/leave" in html
    assert f"/api/v1/students/{world.users['stu1']}/courses/{world.courses['c1']}/series" in html
    assert 'id="qr"' in html  # the check-in code is still there
    today = html[html.index('id="today"'):html.index('id="standings"')]
    assert f'data-session-id="{world.sessions["past1"]}"' not in today  # two days ago
    if (world.now - timedelta(minutes=5)).astimezone().date() == world.now.astimezone().date():
        assert f'data-session-id="{world.sessions["live1"]}"' in today  # started 5 min ago (today)
        assert 'data-status="present"' in today
