"""Assessments through the API: create (who may), marks one by one and in bulk (absent, exempt,
refusals all or nothing), the audit of every mark change, the gradebook, and who sees which marks
(nothing for a student before release)."""
from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta

import pytest
from web_helpers import bearer

pytestmark = pytest.mark.integration


async def academic_world(db, world) -> dict:
    """A term around now, sections A (stu1) and B (stu2) of c1, and c2's section (stu1, stu3)."""
    sfx = world.suffix
    term, sec_a, sec_b, sec_c2 = f"t_{sfx}", f"a_{sfx}", f"b_{sfx}", f"c2s_{sfx}"
    today = world.now.date()
    await db.execute("INSERT INTO terms (id, name, starts_on, ends_on) VALUES ($1, $1, $2, $3)",
                     term, today - timedelta(days=30), today + timedelta(days=60))
    for sid, course, name in ((sec_a, "c1", "A"), (sec_b, "c1", "B"), (sec_c2, "c2", "A")):
        await db.execute("INSERT INTO sections (id, course_id, term_id, name) VALUES ($1, $2, $3, $4)",
                         sid, world.courses[course], term, name)
    for course, student, sec in (("c1", "stu1", sec_a), ("c1", "stu2", sec_b), ("c2", "stu1", sec_c2),
                                 ("c2", "stu3", sec_c2)):
        await db.execute("UPDATE enrolments SET section_id = $3 WHERE course_id = $1 AND student_id = $2",
                         world.courses[course], world.users[student], sec)
    return {"term": term, "A": sec_a, "B": sec_b, "c2": sec_c2}


async def create(client, headers, course_id: str, **fields) -> dict:
    response = await client.post(f"/api/v1/courses/{course_id}/assessments", headers=headers, json=fields)
    assert response.status_code == 201, await response.get_json()
    return await response.get_json()


async def test_faculty_create_edit_and_delete_their_courses_assessments(client, db, world) -> None:
    acad = await academic_world(db, world)
    fac1, fac2 = await bearer(client, world.users["fac1"]), await bearer(client, world.users["fac2"])
    stu1 = await bearer(client, world.users["stu1"])
    c1 = world.courses["c1"]
    quiz = await create(client, fac1, c1, term_id=acad["term"], kind="quiz", title=" Quiz 1 ", max_marks=10,
                        weight=5, held_on=world.now.date().isoformat())
    assert (quiz["kind"], quiz["title"], quiz["max_marks"], quiz["weight"], quiz["marked"]) == ("quiz", "Quiz 1",
                                                                                               10.0, 5.0, 0)
    body = {"term_id": acad["term"], "kind": "midterm", "title": "Mid", "max_marks": 50, "weight": 20}
    assert (await client.post(f"/api/v1/courses/{c1}/assessments", headers=fac2, json=body)).status_code == 403
    assert (await client.post(f"/api/v1/courses/{c1}/assessments", headers=stu1, json=body)).status_code == 403
    refused = await client.post(f"/api/v1/courses/{c1}/assessments", headers=fac1, json={**body, "kind": "assignment"})
    assert refused.status_code == 400 and (await refused.get_json())["error"]["field"] == "kind"
    wrong_section = await client.post(f"/api/v1/courses/{c1}/assessments", headers=fac1,
                                      json={**body, "section_id": acad["c2"]})
    assert wrong_section.status_code == 400 and (await wrong_section.get_json())["error"]["field"] == "section_id"

    changed = await client.patch(f"/api/v1/assessments/{quiz['id']}", headers=fac1, json={"weight": 7.5})
    assert changed.status_code == 200 and (await changed.get_json())["weight"] == 7.5
    assert (await client.patch(f"/api/v1/assessments/{quiz['id']}", headers=fac2, json={"weight": 1})).status_code == 403
    listed = await (await client.get(f"/api/v1/courses/{c1}/assessments?term_id={acad['term']}", headers=fac1)).get_json()
    assert [a["id"] for a in listed["items"]] == [quiz["id"]]

    deleted = await client.delete(f"/api/v1/assessments/{quiz['id']}", headers=fac1)
    assert deleted.status_code == 200
    assert (await client.get(f"/api/v1/assessments/{quiz['id']}", headers=fac1)).status_code == 404
    actions = [r["action"] for r in await db.fetch(
        "SELECT action FROM audit_log WHERE entity = 'assessment' AND entity_id = $1 ORDER BY id", str(quiz["id"]))]
    assert actions == ["created", "updated", "deleted"]


async def test_marks_bulk_single_absent_exempt_and_their_audit(client, db, world) -> None:
    acad = await academic_world(db, world)
    fac1 = await bearer(client, world.users["fac1"])
    c1 = world.courses["c1"]
    quiz = await create(client, fac1, c1, term_id=acad["term"], kind="quiz", title="Quiz", max_marks=10, weight=10)
    url = f"/api/v1/assessments/{quiz['id']}/marks"
    roll1, roll2 = f"R-stu1-{world.suffix}", f"R-stu2-{world.suffix}"

    # One bad line refuses the whole paste: nothing is recorded, every problem is named.
    refused = await client.post(url, headers=fac1, json={"marks": [
        {"roll_number": roll1, "marks": 11}, {"roll_number": "nobody", "marks": 3},
        {"student_id": world.users["stu3"], "marks": 2}]})
    assert refused.status_code == 422
    errors = (await refused.get_json())["errors"]
    assert [e["line"] for e in errors] == [2]  # roll numbers are resolved first
    refused = await client.post(url, headers=fac1, json={"marks": [
        {"roll_number": roll1, "marks": 11}, {"student_id": world.users["stu3"], "marks": 2},
        {"roll_number": roll2, "status": "absent", "marks": 1}]})
    body = await refused.get_json()
    assert refused.status_code == 422 and [(e["line"], e["field"]) for e in body["errors"]] == [
        (1, "marks"), (2, "student_id"), (3, "marks")]
    assert await db.fetchval("SELECT count(*) FROM assessment_marks WHERE assessment_id = $1", quiz["id"]) == 0

    done = await client.post(url, headers=fac1, json={"marks": [
        {"roll_number": roll1, "marks": 8.5, "feedback": "Good"}, {"roll_number": roll2, "status": "absent"}],
        "reason": "pasted"})
    assert done.status_code == 200
    body = await done.get_json()
    assert body["unchanged"] == 0
    assert {(m["student_id"], m["status"], m["marks"]) for m in body["changed"]} == {
        (world.users["stu1"], "graded", 8.5), (world.users["stu2"], "absent", None)}

    # One mark changed in place (the gradebook's cell): exempt; then the same again changes nothing.
    put = f"{url}/{world.users['stu2']}"
    first = await client.put(put, headers=fac1, json={"status": "exempt"})
    assert first.status_code == 200 and (await first.get_json())["mark"]["status"] == "exempt"
    again = await (await client.put(put, headers=fac1, json={"status": "exempt"})).get_json()
    assert again["changed"] is False and again["mark"]["status"] == "exempt"
    too_high = await client.put(f"{url}/{world.users['stu1']}", headers=fac1, json={"marks": 10.5})
    assert too_high.status_code == 400 and (await too_high.get_json())["error"]["field"] == "marks"
    assert (await client.put(f"{url}/{world.users['stu1']}", headers=await bearer(client, world.users["fac2"]),
                             json={"marks": 1})).status_code == 403

    audit = await db.fetch(
        "SELECT action, student_id, course_id, before, after, reason, actor FROM audit_log"
        " WHERE entity = 'assessment_mark' AND entity_id LIKE $1 ORDER BY id", f"{quiz['id']}/%")
    assert [(a["action"], a["student_id"]) for a in audit] == [
        ("recorded", world.users["stu1"]), ("recorded", world.users["stu2"]), ("changed", world.users["stu2"])]
    assert all(a["course_id"] == c1 and a["actor"] == world.users["fac1"] for a in audit)
    assert audit[0]["reason"] == "pasted"
    assert json.loads(audit[0]["after"]) == {"status": "graded", "marks": "8.50", "feedback": "Good"}
    # The same mark again (as 8.5 or 8.50) is no change: no new audit entry.
    same = await (await client.put(f"{url}/{world.users['stu1']}", headers=fac1, json={"marks": 8.50})).get_json()
    assert same["changed"] is False

    # Full marks cannot go below a mark already given.
    lowered = await client.patch(f"/api/v1/assessments/{quiz['id']}", headers=fac1, json={"max_marks": 8})
    assert lowered.status_code == 409


async def test_gradebook_shows_every_assessment_and_student(client, db, world) -> None:
    acad = await academic_world(db, world)
    fac1 = await bearer(client, world.users["fac1"])
    c1 = world.courses["c1"]
    quiz = await create(client, fac1, c1, term_id=acad["term"], kind="quiz", title="Quiz", max_marks=10, weight=10)
    lab = await create(client, fac1, c1, term_id=acad["term"], kind="practical", title="Lab A", max_marks=20,
                       weight=10, section_id=acad["A"])
    await client.put(f"/api/v1/assessments/{lab['id']}/marks/{world.users['stu1']}", headers=fac1, json={"marks": 15})
    # stu2 (section B) does not take section A's practical.
    refused = await client.put(f"/api/v1/assessments/{lab['id']}/marks/{world.users['stu2']}", headers=fac1,
                               json={"marks": 15})
    assert refused.status_code == 400 and (await refused.get_json())["error"]["field"] == "student_id"
    book = await (await client.get(f"/api/v1/courses/{c1}/gradebook", headers=fac1)).get_json()
    assert book["term_id"] == acad["term"] and book["released"] is False
    assert [a["id"] for a in book["assessments"]] == [quiz["id"], lab["id"]]
    rows = {s["student_id"]: s for s in book["students"]}
    assert set(rows) == {world.users["stu1"], world.users["stu2"]}
    assert rows[world.users["stu1"]]["marks"][str(lab["id"])]["marks"] == 15.0
    assert rows[world.users["stu2"]]["marks"] == {}
    assert (await client.get(f"/api/v1/courses/{c1}/gradebook",
                             headers=await bearer(client, world.users["fac2"]))).status_code == 403
    assert (await client.get(f"/api/v1/courses/{c1}/gradebook",
                             headers=await bearer(client, world.users["stu1"]))).status_code == 403


async def test_students_see_only_their_own_marks_and_only_after_release(client, db, world) -> None:
    acad = await academic_world(db, world)
    fac1 = await bearer(client, world.users["fac1"])
    stu1, stu2 = await bearer(client, world.users["stu1"]), await bearer(client, world.users["stu2"])
    c1 = world.courses["c1"]
    quiz = await create(client, fac1, c1, term_id=acad["term"], kind="quiz", title="Quiz", max_marks=10, weight=10)
    await client.post(f"/api/v1/assessments/{quiz['id']}/marks", headers=fac1, json={"marks": [
        {"student_id": world.users["stu1"], "marks": 9}, {"student_id": world.users["stu2"], "marks": 4}]})
    own = f"/api/v1/students/{world.users['stu1']}/marks"
    before = await (await client.get(own, headers=stu1)).get_json()
    assert before["items"] == []  # not released: no marks, not even the assessment
    assert (await client.get(own, headers=stu2)).status_code == 403
    teacher = await (await client.get(own, headers=fac1)).get_json()
    assert [i["mark"]["marks"] for i in teacher["items"]] == [9.0]
    # fac2 teaches c2 (stu1 takes it) but not c1: c1's marks stay hidden from them.
    other = await (await client.get(own, headers=await bearer(client, world.users["fac2"]))).get_json()
    assert other["items"] == []

    await db.execute("INSERT INTO grade_releases (course_id, term_id) VALUES ($1, $2)", c1, acad["term"])
    after = await (await client.get(own, headers=stu1)).get_json()
    assert [(i["assessment"]["title"], i["mark"]["marks"]) for i in after["items"]] == [("Quiz", 9.0)]
    assert all(i["mark"]["student_id"] == world.users["stu1"] for i in after["items"])


async def test_the_gradebook_shows_each_students_running_weighted_percentage(client, db, world) -> None:
    acad = await academic_world(db, world)
    fac1 = await bearer(client, world.users["fac1"])
    c1 = world.courses["c1"]
    quiz = await create(client, fac1, c1, term_id=acad["term"], kind="quiz", title="Quiz", max_marks=10, weight=10)
    mid = await create(client, fac1, c1, term_id=acad["term"], kind="midterm", title="Mid", max_marks=50, weight=30)
    await create(client, fac1, c1, term_id=acad["term"], kind="exam", title="Final", max_marks=100, weight=60)
    stu1, stu2 = world.users["stu1"], world.users["stu2"]
    await client.post(f"/api/v1/assessments/{quiz['id']}/marks", headers=fac1, json={"marks": [
        {"student_id": stu1, "marks": 8}, {"student_id": stu2, "status": "absent"}]})
    await client.post(f"/api/v1/assessments/{mid['id']}/marks", headers=fac1, json={"marks": [
        {"student_id": stu1, "marks": 35}, {"student_id": stu2, "marks": 40}]})
    book = await (await client.get(f"/api/v1/courses/{c1}/gradebook", headers=fac1)).get_json()
    running = {s["student_id"]: s["running_percent"] for s in book["students"]}
    # stu1: (8/10 * 10 + 35/50 * 30) / 40 = 29/40 = 72.5 %; stu2: absent counts 0: (0 + 24) / 40 = 60 %.
    assert running == {stu1: 72.5, stu2: 60.0}
    await client.put(f"/api/v1/assessments/{quiz['id']}/marks/{stu2}", headers=fac1, json={"status": "exempt"})
    book = await (await client.get(f"/api/v1/courses/{c1}/gradebook", headers=fac1)).get_json()
    # Exempt leaves the quiz's weight out: 24 / 30 = 80 %.
    assert {s["student_id"]: s["running_percent"] for s in book["students"]}[stu2] == 80.0


async def test_marks_import_from_csv_checks_every_line_first(client, db, world) -> None:
    acad = await academic_world(db, world)
    fac1 = await bearer(client, world.users["fac1"])
    quiz = await create(client, fac1, world.courses["c1"], term_id=acad["term"], kind="quiz", title="Quiz",
                        max_marks=10, weight=10)
    url = f"/api/v1/assessments/{quiz['id']}/marks/import"
    roll1, roll2 = f"R-stu1-{world.suffix}", f"R-stu2-{world.suffix}"
    bad = f"roll_number,marks\n{roll1},12\nnobody,3\n{roll2},x\n"
    refused = await client.post(url, headers={**fac1, "Content-Type": "text/csv"}, data=bad)
    body = await refused.get_json()
    assert refused.status_code == 422 and body["error"]["code"] == "import_rejected"
    assert [(e["line"], e["field"]) for e in body["errors"]] == [(3, "roll_number"), (4, None)]
    # Once the names are right, marks are checked against the assessment: line 2 is over full marks.
    refused = await client.post(url, headers=fac1, json={"csv": f"{roll1},12\n{roll2},4\n"})
    assert [(e["line"], e["field"]) for e in (await refused.get_json())["errors"]] == [(1, "marks")]
    good = f"{roll1},9.5,Well done\n{roll2},4\n"
    dry = await (await client.post(url + "?dry_run=1", headers=fac1, json={"csv": good})).get_json()
    assert dry == {"dry_run": True, "changed": 2, "unchanged": 0}
    assert await db.fetchval("SELECT count(*) FROM assessment_marks WHERE assessment_id = $1", quiz["id"]) == 0
    done = await (await client.post(url, headers={**fac1, "Content-Type": "text/csv"}, data=good)).get_json()
    assert done == {"dry_run": False, "changed": 2, "unchanged": 0}
    rows = await db.fetch("SELECT student_id, marks, feedback FROM assessment_marks WHERE assessment_id = $1"
                          " ORDER BY marks", quiz["id"])
    assert [(r["student_id"], float(r["marks"]), r["feedback"]) for r in rows] == [
        (world.users["stu2"], 4.0, None), (world.users["stu1"], 9.5, "Well done")]


async def test_the_data_export_holds_released_marks_only(client, db, world) -> None:
    acad = await academic_world(db, world)
    fac1, fac2 = await bearer(client, world.users["fac1"]), await bearer(client, world.users["fac2"])
    stu1 = world.users["stu1"]
    q1 = await create(client, fac1, world.courses["c1"], term_id=acad["term"], kind="quiz", title="Q1", max_marks=10,
                      weight=10)
    q2 = await create(client, fac2, world.courses["c2"], term_id=acad["term"], kind="quiz", title="Q2", max_marks=10,
                      weight=10)
    await client.put(f"/api/v1/assessments/{q1['id']}/marks/{stu1}", headers=fac1, json={"marks": 7, "feedback": "ok"})
    await client.put(f"/api/v1/assessments/{q2['id']}/marks/{stu1}", headers=fac2, json={"marks": 3})
    await db.execute("INSERT INTO grade_releases (course_id, term_id) VALUES ($1, $2)", world.courses["c1"],
                     acad["term"])
    response = await client.get(f"/api/v1/students/{stu1}/export", headers=await bearer(client, stu1))
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(await response.get_data()))
    marks = json.loads(archive.read("marks.json"))
    assert [(m["assessment_title"], float(m["marks"]), m["feedback"]) for m in marks] == [("Q1", 7.0, "ok")]
