"""Grades API: scale edits and refusals, credits, grade sheet, release (visibility before/after, audit,
notifications, final results), what-if, transcript and its CSV; ownership.

World (tests/web/conftest.py): fac1 teaches c1 (stu1, stu2), fac2 teaches c2 (stu1, stu3). Each test adds
its own terms: a running one for c1 and an ended one for c2, with sections, assessments and marks.
"""
from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from web_helpers import bearer

DEFAULT_BANDS = [
    {"letter": "A", "min_percent": 90, "points": 4.0, "is_pass": True},
    {"letter": "A-", "min_percent": 85, "points": 3.7, "is_pass": True},
    {"letter": "B+", "min_percent": 80, "points": 3.3, "is_pass": True},
    {"letter": "B", "min_percent": 75, "points": 3.0, "is_pass": True},
    {"letter": "B-", "min_percent": 70, "points": 2.7, "is_pass": True},
    {"letter": "C+", "min_percent": 65, "points": 2.3, "is_pass": True},
    {"letter": "C", "min_percent": 60, "points": 2.0, "is_pass": True},
    {"letter": "D", "min_percent": 50, "points": 1.0, "is_pass": True},
    {"letter": "F", "min_percent": 0, "points": 0.0, "is_pass": False},
]


@dataclass
class Grades:
    now_term: str
    past_term: str
    quiz: int  # c1, running term: 40%, /10
    exam: int  # c1, running term: 60%, /60 (no marks yet)
    past_a: int  # c2, ended term: 50%, /100
    past_b: int  # c2, ended term: 50%, /100


@pytest.fixture
async def grades(db, world) -> Grades:
    """c1 in a running term: stu1 8/10 on the quiz, stu2 absent; the exam unmarked. c2 in an ended term:
    stu1 90 and 80 (85% -> A-), stu3 40 and 50 (45% -> F). c1 has 3 credits (default), c2 4."""
    sfx = uuid.uuid4().hex[:8]
    today = world.now.date()
    now_term, past_term = f"tnow_{sfx}", f"tpast_{sfx}"
    c1, c2 = world.courses["c1"], world.courses["c2"]
    u = world.users

    async def work(conn) -> Grades:
        await conn.executemany(
            "INSERT INTO terms (id, name, starts_on, ends_on) VALUES ($1, $2, $3, $4)",
            [(now_term, f"Now {sfx}", today - timedelta(days=30), today + timedelta(days=60)),
             (past_term, f"Past {sfx}", today - timedelta(days=200), today - timedelta(days=100))])
        await conn.executemany(
            "INSERT INTO sections (id, course_id, term_id, name) VALUES ($1, $2, $3, 'A')",
            [(f"s1_{sfx}", c1, now_term), (f"s2_{sfx}", c2, past_term)])
        await conn.execute("UPDATE enrolments SET section_id = $1 WHERE course_id = $2", f"s1_{sfx}", c1)
        await conn.execute("UPDATE enrolments SET section_id = $1 WHERE course_id = $2", f"s2_{sfx}", c2)
        await conn.execute("UPDATE courses SET credits = 4 WHERE id = $1", c2)
        ids = [await conn.fetchval(
            "INSERT INTO assessments (course_id, term_id, kind, title, max_marks, weight) VALUES ($1, $2, $3, $4, $5, $6)"
            " RETURNING id", *row) for row in (
                (c1, now_term, "quiz", "Quiz 1", 10, 40), (c1, now_term, "exam", "Final exam", 60, 60),
                (c2, past_term, "midterm", "Midterm", 100, 50), (c2, past_term, "exam", "Final", 100, 50))]
        quiz, exam, pa, pb = ids
        await conn.executemany(
            "INSERT INTO assessment_marks (assessment_id, student_id, status, raw_marks, marks) VALUES ($1, $2, $3, $4, $4)",
            [(quiz, u["stu1"], "graded", 8), (quiz, u["stu2"], "absent", None),
             (pa, u["stu1"], "graded", 90), (pb, u["stu1"], "graded", 80),
             (pa, u["stu3"], "graded", 40), (pb, u["stu3"], "graded", 50)])
        return Grades(now_term, past_term, quiz, exam, pa, pb)

    return await db.run(work, transaction=True)


@pytest.fixture
def auth(client, world):
    """``await auth("fac1")``: that user's bearer headers, logged in once per test (a login costs an argon2 hash)."""
    cache: dict[str, dict[str, str]] = {}

    async def headers(key: str) -> dict[str, str]:
        if key not in cache:
            cache[key] = await bearer(client, world.username(key))
        return cache[key]

    return headers


def _sheet_url(course: str, term: str) -> str:
    return f"/api/v1/courses/{course}/terms/{term}/grades"


async def test_scale_edit_refuses_gaps_and_overlaps_and_saves_a_good_scale(client, auth, world):
    admin = await auth("admin")
    got = await (await client.get("/api/v1/grade-scale", headers=await auth("stu1"))).get_json()
    assert [b["letter"] for b in got["bands"]][0] == "A" and got["bands"][-1]["min_percent"] == 0
    assert got["bands"][0]["below_percent"] is None and got["bands"][1]["below_percent"] == 90
    refusals = [
        ([{"letter": "P", "min_percent": 50, "points": 4, "is_pass": True}], "bands"),
        ([{"letter": "A", "min_percent": 50, "points": 4, "is_pass": True},
          {"letter": "B", "min_percent": 50, "points": 3, "is_pass": True},
          {"letter": "F", "min_percent": 0, "points": 0, "is_pass": False}], "bands[1].min_percent"),
        ([{"letter": "A", "min_percent": 50, "points": 4, "is_pass": True},
          {"letter": "F", "min_percent": 0, "points": 0, "is_pass": True},
          {"letter": "X", "min_percent": 20, "points": 1, "is_pass": False}], "bands[1].is_pass"),
        ([{"letter": "A", "min_percent": 50.0001, "points": 4, "is_pass": True},
          {"letter": "F", "min_percent": 0, "points": 0, "is_pass": False}], "bands[0].min_percent"),
    ]
    for bands, field in refusals:
        r = await client.put("/api/v1/grade-scale", headers=admin, json={"name": "Bad", "kind": "letter", "bands": bands})
        assert r.status_code == 400, bands
        assert (await r.get_json())["error"]["field"] == field
    assert (await client.get("/api/v1/grade-scale", headers=admin)).status_code == 200
    r = await client.put("/api/v1/grade-scale", headers=await auth("fac1"),
                         json={"name": "x", "kind": "letter", "bands": DEFAULT_BANDS})
    assert r.status_code == 403
    try:
        r = await client.put("/api/v1/grade-scale", headers=admin, json={
            "name": "Pass/fail", "kind": "percentage",
            "bands": [{"letter": "Pass", "min_percent": 40, "points": 4, "is_pass": True},
                      {"letter": "Fail", "min_percent": 0, "points": 0, "is_pass": False}]})
        assert r.status_code == 200, await r.get_data(as_text=True)
        body = await r.get_json()
        assert (body["name"], body["kind"], [b["letter"] for b in body["bands"]]) == ("Pass/fail", "percentage",
                                                                                      ["Pass", "Fail"])
        assert body["updated_by"] == world.users["admin"]
    finally:
        r = await client.put("/api/v1/grade-scale", headers=admin,
                             json={"name": "4.0 letter scale", "kind": "letter", "bands": DEFAULT_BANDS})
        assert r.status_code == 200


async def test_course_credits_are_admin_only_and_checked(client, auth, world, db):
    admin, course = await auth("admin"), world.courses["c1"]
    r = await client.put(f"/api/v1/courses/{course}/credits", headers=admin, json={"credits": 4.5})
    assert r.status_code == 200 and (await r.get_json())["credits"] == 4.5
    assert await db.fetchval("SELECT credits FROM courses WHERE id = $1", course) == 4.5
    assert (await client.put(f"/api/v1/courses/{course}/credits", headers=admin,
                             json={"credits": 4.25})).status_code == 400
    assert (await client.put(f"/api/v1/courses/{course}/credits", headers=admin,
                             json={"credits": 41})).status_code == 400
    assert (await client.put("/api/v1/courses/nope_x/credits", headers=admin, json={"credits": 3})).status_code == 404
    assert (await client.put(f"/api/v1/courses/{course}/credits", headers=await auth("fac1"),
                             json={"credits": 3})).status_code == 403
    listed = await (await client.get("/api/v1/grade-credits", headers=admin)).get_json()
    assert {"course_id": course, "code": f"C1-{world.suffix}", "title": "Networks", "credits": 4.5} in listed["items"]
    assert await db.fetchval(
        "SELECT count(*) FROM audit_log WHERE entity = 'course' AND action = 'credits_changed' AND entity_id = $1",
        course) == 1


async def test_grade_sheet_for_the_courses_faculty_and_nobody_else(client, auth, world, grades):
    c1 = world.courses["c1"]
    fac1 = await auth("fac1")
    r = await client.get(_sheet_url(c1, grades.now_term), headers=fac1)
    assert r.status_code == 200
    sheet = await r.get_json()
    rows = {s["student_id"]: s for s in sheet["students"]}
    stu1, stu2 = rows[world.users["stu1"]], rows[world.users["stu2"]]
    # stu1: 8/10 on a 40% quiz -> running 80%; final 32% (the exam's 60% counts 0 until marked)
    assert (stu1["running_percent"], stu1["final_percent"], stu1["letter"], stu1["missing_marks"]) == (80, 32, "F", 1)
    assert (stu2["running_percent"], stu2["final_percent"], stu2["marks"][str(grades.quiz)]["status"]) == (0, 0, "absent")
    assert sheet["missing_marks"] == 2 and sheet["total_weight"] == 100 and not sheet["term_ended"]
    # Running and unreleased: the distribution bands the running percentages (80% -> B+, 0% -> F).
    counts = {d["letter"]: d["students"] for d in sheet["distribution"] if d["students"]}
    assert (sheet["distribution_basis"], counts) == ("running", {"B+": 1, "F": 1})
    listed = await (await client.get(f"/api/v1/grades/courses?term_id={grades.now_term}", headers=fac1)).get_json()
    assert [(i["course_id"], i["released"]) for i in listed["items"]] == [(c1, False)]
    assert (await client.get(_sheet_url(c1, grades.now_term),
                             headers=await auth("fac2"))).status_code == 403
    assert (await client.get(_sheet_url(c1, grades.now_term),
                             headers=await auth("stu1"))).status_code == 403
    assert (await client.get(_sheet_url(c1, "no_such_term"), headers=fac1)).status_code == 404


async def test_students_see_nothing_before_release_and_their_marks_after(client, auth, world, db, grades):
    c1 = world.courses["c1"]
    stu1 = await auth("stu1")
    before = await (await client.get("/api/v1/me/grades", headers=stu1)).get_json()
    course = next(c for c in before["courses"] if c["course_term"]["course_id"] == c1)
    assert (course["released"], course["marks"], course["letter"], course["final_percent"]) == (False, {}, None, None)
    assert [a["title"] for a in course["assessments"]] == ["Quiz 1", "Final exam"]  # the work itself is no secret
    transcript = await (await client.get("/api/v1/me/transcript", headers=stu1)).get_json()
    assert all(line["course_id"] != c1 for t in transcript["terms"] for line in t["courses"])

    # A student, and the faculty of another course, cannot release it.
    url = _sheet_url(c1, grades.now_term) + "/release"
    assert (await client.post(url, headers=stu1)).status_code == 403
    assert (await client.post(url, headers=await auth("fac2"))).status_code == 403

    r = await client.post(url, headers=await auth("fac1"))
    assert r.status_code == 200, await r.get_data(as_text=True)
    done = await r.get_json()
    assert (done["notified"], done["students"], done["missing_marks"], done["finalized"]) == (2, 2, 2, 0)
    assert done["course_term"]["released"]
    assert (await client.post(url, headers=await auth("fac1"))).status_code == 409
    notes = await db.fetch("SELECT user_id, link FROM notifications WHERE kind = 'grades_released' AND data->>'course_id' = $1",
                           c1)
    assert sorted(n["user_id"] for n in notes) == sorted([world.users["stu1"], world.users["stu2"]])
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE entity = 'grades' AND action = 'released'"
                             " AND entity_id = $1", f"{c1}/{grades.now_term}") == 1

    after = await (await client.get("/api/v1/me/grades", headers=stu1)).get_json()
    course = next(c for c in after["courses"] if c["course_term"]["course_id"] == c1)
    assert course["released"] and course["provisional"]
    assert course["marks"] == {str(grades.quiz): {"status": "graded", "marks": 8.0}}
    assert (course["running_percent"], course["final_percent"], course["letter"]) == (80, 32, "F")
    # Released: it counts in the GPA (provisionally: the term is running), failed -> 0 points over 3 credits.
    transcript = await (await client.get("/api/v1/me/transcript", headers=stu1)).get_json()
    line = next(x for t in transcript["terms"] for x in t["courses"] if x["course_id"] == c1)
    assert (line["letter"], line["outcome"], line["provisional"], line["points"]) == ("F", "failed", True, 0)
    # Another student's marks never show.
    stu3 = await (await client.get("/api/v1/me/grades", headers=await auth("stu3"))).get_json()
    assert all(c["course_term"]["course_id"] != c1 for c in stu3["courses"])


async def test_releasing_an_ended_term_stores_final_results_and_the_transcript_shows_gpa(client, auth, world, db, grades):
    c2 = world.courses["c2"]
    fac2 = await auth("fac2")
    r = await client.post(_sheet_url(c2, grades.past_term) + "/release", headers=fac2)
    assert r.status_code == 200
    assert (await r.get_json())["finalized"] == 2
    stored = {row["student_id"]: row for row in await db.fetch(
        "SELECT student_id, percent, letter, points, credits, outcome FROM course_results WHERE course_id = $1"
        " AND term_id = $2", c2, grades.past_term)}
    s1, s3 = stored[world.users["stu1"]], stored[world.users["stu3"]]
    assert (s1["percent"], s1["letter"], s1["points"], s1["credits"], s1["outcome"]) == (85, "A-", Decimal("3.7"), 4, "passed")
    assert (s3["percent"], s3["letter"], s3["points"], s3["outcome"]) == (45, "F", 0, "failed")

    # Release c1's running term too: stu1 then has A- (3.7 x 4 credits) and a provisional F (0 x 3 credits).
    assert (await client.post(_sheet_url(world.courses["c1"], grades.now_term) + "/release",
                              headers=await auth("fac1"))).status_code == 200
    stu1 = await auth("stu1")
    t = await (await client.get("/api/v1/me/transcript", headers=stu1)).get_json()
    mine = [term for term in t["terms"] if term["term_id"] in (grades.past_term, grades.now_term)]
    assert [term["term_id"] for term in mine] == [grades.past_term, grades.now_term]  # terms in order
    assert (mine[0]["term_gpa"], mine[0]["cumulative_gpa"], mine[0]["credits_earned"]) == (3.7, 3.7, 4)
    assert mine[1]["term_gpa"] == 0 and mine[1]["cumulative_gpa"] == 2.11  # 14.8 / 7 = 2.114..., rounded down
    assert t["cumulative_gpa"] == 2.11

    r = await client.get("/api/v1/me/transcript.csv", headers=stu1)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(await r.get_data(as_text=True))))
    past = next(x for x in rows if x["course_code"] == f"C2-{world.suffix}")
    assert (past["grade"], past["percent"], past["points"], past["credits"], past["outcome"], past["provisional"],
            past["term_gpa"]) == ("A-", "85.00", "3.70", "4.0", "passed", "no", "3.70")
    now = next(x for x in rows if x["course_code"] == f"C1-{world.suffix}")
    assert (now["grade"], now["provisional"], now["cumulative_gpa"]) == ("F", "yes", "2.11")
    assert (await client.get("/api/v1/me/transcript.csv",
                             headers=await auth("fac1"))).status_code == 403


async def test_withdrawal_never_counts_and_a_final_result_is_not_overwritten(client, auth, world, db, grades):
    admin = await auth("admin")
    c1, c2 = world.courses["c1"], world.courses["c2"]
    url = f"/api/v1/courses/{c1}/terms/{grades.now_term}/withdrawals"
    assert (await client.post(url, headers=await auth("fac1"),
                              json={"student_id": world.users["stu1"]})).status_code == 403
    r = await client.post(url, headers=admin, json={"student_id": world.users["stu1"], "reason": "Moved abroad"})
    assert r.status_code == 201 and (await r.get_json())["outcome"] == "withdrawn"
    assert (await client.post(url, headers=admin, json={"student_id": world.users["stu1"]})).status_code == 409
    assert (await client.post(url, headers=admin, json={"student_id": "nobody_x"})).status_code == 404
    await client.post(_sheet_url(c2, grades.past_term) + "/release", headers=await auth("fac2"))
    # stu1's transcript: the withdrawal is listed and does not count; the GPA is the A- alone.
    t = await (await client.get("/api/v1/me/transcript", headers=await auth("stu1"))).get_json()
    line = next(x for term in t["terms"] for x in term["courses"] if x["course_id"] == c1)
    assert (line["outcome"], line["points"], line["letter"]) == ("withdrawn", None, None)
    assert t["cumulative_gpa"] == 3.7
    r = await client.post(f"/api/v1/courses/{c2}/terms/{grades.past_term}/withdrawals", headers=admin,
                          json={"student_id": world.users["stu3"]})
    assert r.status_code == 409
    assert await db.fetchval("SELECT outcome FROM course_results WHERE student_id = $1 AND course_id = $2",
                             world.users["stu3"], c2) == "failed"


async def test_what_if_projects_grade_and_gpa_without_revealing_unreleased_marks(client, auth, world, grades):
    c1 = world.courses["c1"]
    stu1 = await auth("stu1")
    # Unreleased: the student's real 8/10 is not used; their hopes stand in for everything.
    r = await client.post("/api/v1/me/grades/what-if", headers=stu1, json={
        "term_id": grades.now_term,
        "courses": [{"course_id": c1, "hopes": [{"assessment_id": grades.quiz, "marks": 10},
                                                 {"assessment_id": grades.exam, "marks": 45}]}]})
    assert r.status_code == 200, await r.get_data(as_text=True)
    body = await r.get_json()
    [course] = body["courses"]
    # 40 x 10/10 + 60 x 45/60 = 85 -> A- (3.7); the only course of the term
    assert (course["percent"], course["letter"], course["points"], course["left_out"]) == (85, "A-", 3.7, 0)
    assert body["term_gpa"] == 3.7
    one = await (await client.post("/api/v1/me/grades/what-if", headers=stu1, json={
        "term_id": grades.now_term, "courses": [{"course_id": c1, "hopes": [{"assessment_id": grades.exam,
                                                                              "marks": 30}]}]})).get_json()
    assert (one["courses"][0]["percent"], one["courses"][0]["letter"], one["courses"][0]["left_out"]) == (50, "D", 1)

    refusals = [
        ({"course_id": c1, "hopes": [{"assessment_id": grades.exam, "marks": 61}]}, "courses[0].hopes"),
        ({"course_id": c1, "hopes": [{"assessment_id": grades.past_a, "marks": 1}]}, "courses[0].hopes"),
        ({"course_id": world.courses["c2"], "hopes": []}, "courses[0].course_id"),  # not in this term
    ]
    for course_body, field in refusals:
        r = await client.post("/api/v1/me/grades/what-if", headers=stu1,
                              json={"term_id": grades.now_term, "courses": [course_body]})
        assert r.status_code == 400, course_body
        assert (await r.get_json())["error"]["field"] == field
    r = await client.post("/api/v1/me/grades/what-if", headers=stu1, json={"term_id": "nope", "courses": []})
    assert r.status_code == 404
    stu3 = await auth("stu3")
    r = await client.post("/api/v1/me/grades/what-if", headers=stu3,
                          json={"term_id": grades.now_term, "courses": [{"course_id": c1, "hopes": []}]})
    assert r.status_code == 404  # stu3 has no course in that term


async def test_what_if_after_release_keeps_real_marks_and_refuses_final_courses(client, auth, world, grades):
    c1, c2 = world.courses["c1"], world.courses["c2"]
    await client.post(_sheet_url(c1, grades.now_term) + "/release", headers=await auth("fac1"))
    await client.post(_sheet_url(c2, grades.past_term) + "/release", headers=await auth("fac2"))
    stu1 = await auth("stu1")
    body = await (await client.post("/api/v1/me/grades/what-if", headers=stu1, json={
        "term_id": grades.now_term,
        # A hope for the marked quiz is ignored: the released 8/10 stands.
        "courses": [{"course_id": c1, "hopes": [{"assessment_id": grades.quiz, "marks": 10},
                                                 {"assessment_id": grades.exam, "marks": 60}]}]})).get_json()
    # 40 x 0.8 + 60 = 92 -> A; cumulative with the final A- (4 credits): (4.0 x 3 + 3.7 x 4) / 7 = 3.828...
    assert (body["courses"][0]["percent"], body["courses"][0]["letter"]) == (92, "A")
    assert (body["term_gpa"], body["cumulative_gpa"]) == (4.0, 3.82)
    r = await client.post("/api/v1/me/grades/what-if", headers=stu1, json={
        "term_id": grades.past_term, "courses": [{"course_id": c2, "hopes": []}]})
    assert r.status_code == 400 and (await r.get_json())["error"]["field"] == "courses[0].course_id"


async def test_grades_pages_render_for_their_roles(client, world, grades):
    from web_helpers import page_login

    await page_login(client, world.username("stu1"))
    page = await (await client.get("/student/grades")).get_data(as_text=True)
    assert "Grades not released yet" in page and "what-if-form" in page
    await page_login(client, world.username("fac1"))
    r = await client.get(f"/faculty/grades?course_id={world.courses['c1']}&term_id={grades.now_term}")
    assert r.status_code == 200 and "Release grades" in await r.get_data(as_text=True)
    assert (await client.get(f"/faculty/grades?course_id={world.courses['c2']}&term_id={grades.past_term}")).status_code == 404
    assert (await client.get("/admin/grading")).status_code == 403
    await page_login(client, world.username("admin"))
    assert "scale-form" in await (await client.get("/admin/grading")).get_data(as_text=True)


async def test_a_release_before_the_term_ends_is_finalized_once_it_has_ended(client, auth, world, db, grades):
    from hub.db.grades import finalize_due

    c1 = world.courses["c1"]
    url = _sheet_url(c1, grades.now_term) + "/release"
    assert (await (await client.post(url, headers=await auth("fac1"))).get_json())["finalized"] == 0
    count = "SELECT count(*) FROM course_results WHERE course_id = $1 AND term_id = $2"
    assert await db.fetchval(count, c1, grades.now_term) == 0
    after_the_term = world.now.date() + timedelta(days=61)
    assert await finalize_due(db, after_the_term) >= 2  # other tests' ended releases may be finalized too
    assert await db.fetchval(count, c1, grades.now_term) == 2
    assert await finalize_due(db, after_the_term) == 0  # idempotent
    # The stored result: 32% (the unmarked exam counted 0) -> F, failed, 0 points, the course's 3 credits.
    row = await db.fetchrow("SELECT percent, letter, points, credits, outcome FROM course_results"
                            " WHERE student_id = $1 AND course_id = $2", world.users["stu1"], c1)
    assert dict(row) == {"percent": 32, "letter": "F", "points": 0, "credits": 3, "outcome": "failed"}
    # Nothing left to finalize: a second release is refused.
    assert (await client.post(url, headers=await auth("fac1"))).status_code == 409
