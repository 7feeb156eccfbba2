"""Exam sittings through the API: scheduling notifies the students live, every clash rule refuses
with a 409 listing the clashes (a room's class, the students' class, another sitting's room or
students, a student's own sitting), the check answers without writing, a student's own sitting
replaces their section's, and the timetables carry attendance eligibility to the right people only."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
import trio
from test_assessments_api import academic_world, create
from web_helpers import bearer

from hub.core.bus import user_topic

pytestmark = pytest.mark.integration


async def exam_world(client, db, world) -> dict:
    acad = await academic_world(db, world)
    for n in (2, 3):
        await db.execute("INSERT INTO rooms (id, name, building) VALUES ($1, $2, 'Main')",
                         f"room{n}_{world.suffix}", f"Hall {n} {world.suffix}")
    fac1, fac2 = await bearer(client, world.users["fac1"]), await bearer(client, world.users["fac2"])
    exam1 = await create(client, fac1, world.courses["c1"], term_id=acad["term"], kind="exam", title="Final",
                         max_marks=100, weight=50)
    exam2 = await create(client, fac2, world.courses["c2"], term_id=acad["term"], kind="midterm", title="Mid",
                         max_marks=50, weight=25)
    return acad | {"fac1": fac1, "fac2": fac2, "exam1": exam1["id"], "exam2": exam2["id"],
                   "room2": f"room2_{world.suffix}", "room3": f"room3_{world.suffix}"}


def at(world, start_min: int, end_min: int) -> dict:
    return {"starts_at": (world.now + timedelta(minutes=start_min)).isoformat(),
            "ends_at": (world.now + timedelta(minutes=end_min)).isoformat()}


FREE = (180, 300)  # three hours from now: after the world's live sessions


async def schedule(client, headers, exam_id: int, **body):
    return await client.post(f"/api/v1/assessments/{exam_id}/sittings", headers=headers, json=body)


async def test_scheduling_notifies_the_section_live_and_the_roster_shows_eligibility(client, db, bus, world) -> None:
    w = await exam_world(client, db, world)
    stu1, stu2 = world.users["stu1"], world.users["stu2"]
    with bus.subscribe([user_topic(stu1)]) as mine:
        response = await schedule(client, w["fac1"], w["exam1"], section_id=w["A"], room_id=w["room2"],
                                  note="Bring a calculator", **at(world, *FREE))
        assert response.status_code == 201, await response.get_json()
        sitting = await response.get_json()
        with trio.fail_after(2):
            live = json.loads((await mine.receive()).json)
    assert (sitting["section_id"], sitting["room_id"], sitting["sitters"]) == (w["A"], w["room2"], 1)
    assert live["notification"]["kind"] == "exam_scheduled"
    assert "Final" in live["notification"]["title"] and "Bring a calculator" in live["notification"]["body"]
    assert live["notification"]["data"]["sitting_id"] == sitting["id"]
    assert await db.fetchval("SELECT count(*) FROM notifications WHERE user_id = $1 AND kind = 'exam_scheduled'",
                             stu2) == 0  # section B does not sit it

    roster = await (await client.get(f"/api/v1/sittings/{sitting['id']}/roster", headers=w["fac1"])).get_json()
    [entry] = roster["items"]
    assert entry["student_id"] == stu1
    # stu1 was present at the one held session of c1: 100 %, eligible.
    assert (entry["attendance"]["eligibility"], entry["attendance"]["percentage"]) == ("eligible", 100.0)
    assert roster["counts"]["eligible"] == 1
    assert (await client.get(f"/api/v1/sittings/{sitting['id']}/roster", headers=w["fac2"])).status_code == 403


async def test_every_clash_is_refused_with_the_clashes_listed(client, db, world) -> None:
    w = await exam_world(client, db, world)
    stu1, stu2 = world.users["stu1"], world.users["stu2"]

    async def refused(exam_id: int, headers, **body) -> list[dict]:
        response = await schedule(client, headers, exam_id, **body)
        answer = await response.get_json()
        assert response.status_code == 409, answer
        assert answer["error"]["code"] == "exam_clash" and answer["error"]["message"]
        return answer["clashes"]

    # 1. The room holds a class then (live1 and live2 are in world.room).
    clashes = await refused(w["exam1"], w["fac1"], section_id=w["B"], room_id=world.room, **at(world, 10, 70))
    assert ("room", "class", world.sessions["live1"]) in {(c["kind"], c["with"], c["with_id"]) for c in clashes}
    assert all(c["reason"] for c in clashes)
    # 2. The section's students have a class then (live1 is course-wide), in another room.
    clashes = await refused(w["exam1"], w["fac1"], section_id=w["B"], room_id=w["room2"], **at(world, 10, 70))
    assert [(c["kind"], c["with_id"], c["students"]) for c in clashes] == [
        ("students", world.sessions["live1"], [stu2])]
    assert "has" in clashes[0]["reason"] and "class" in clashes[0]["reason"]

    first = await schedule(client, w["fac1"], w["exam1"], section_id=w["A"], room_id=w["room2"], **at(world, *FREE))
    assert first.status_code == 201
    first_id = str((await first.get_json())["id"])
    # 3. Another sitting holds the room (and stu1, who takes both courses).
    clashes = await refused(w["exam2"], w["fac2"], section_id=w["c2"], room_id=w["room2"], **at(world, 200, 260))
    assert {(c["kind"], c["with"], c["with_id"]) for c in clashes} == {("room", "sitting", first_id),
                                                                       ("students", "sitting", first_id)}
    # 4. The students sit another sitting then, in another room.
    clashes = await refused(w["exam2"], w["fac2"], section_id=w["c2"], room_id=w["room3"], **at(world, 200, 260))
    assert [(c["kind"], c["with_id"], c["students"]) for c in clashes] == [("students", first_id, [stu1])]
    assert "sits" in clashes[0]["reason"]
    # 5. A sitting of one student's own that overlaps one they already sit.
    clashes = await refused(w["exam2"], w["fac2"], student_id=stu1, room_id=w["room3"], **at(world, 290, 320))
    assert [(c["kind"], c["students"]) for c in clashes] == [("students", [stu1])]

    assert await db.fetchval("SELECT count(*) FROM exam_sittings x JOIN assessments a ON a.id = x.assessment_id"
                             " WHERE a.id = ANY($1::bigint[])", [w["exam1"], w["exam2"]]) == 1
    # Right after the first sitting ends is free.
    ok = await schedule(client, w["fac2"], w["exam2"], section_id=w["c2"], room_id=w["room2"], **at(world, 300, 360))
    assert ok.status_code == 201


async def test_the_check_answers_without_writing_and_a_move_keeps_the_rules(client, db, world) -> None:
    w = await exam_world(client, db, world)
    check = f"/api/v1/assessments/{w['exam1']}/sittings/check"
    busy = await (await client.post(check, headers=w["fac1"], json={
        "section_id": w["A"], "room_id": world.room, **at(world, 0, 30)})).get_json()
    assert busy["ok"] is False and {c["kind"] for c in busy["clashes"]} == {"room", "students"}
    free = await (await client.post(check, headers=w["fac1"], json={
        "section_id": w["A"], "room_id": w["room2"], **at(world, *FREE)})).get_json()
    assert free == {"ok": True, "clashes": []}
    assert await db.fetchval("SELECT count(*) FROM exam_sittings WHERE assessment_id = $1", w["exam1"]) == 0
    backwards = await client.post(check, headers=w["fac1"], json={
        "section_id": w["A"], "room_id": w["room2"], **at(world, 300, 180)})
    assert backwards.status_code == 400 and (await backwards.get_json())["error"]["field"] == "ends_at"

    sitting = await (await schedule(client, w["fac1"], w["exam1"], section_id=w["A"], room_id=w["room2"],
                                    **at(world, *FREE))).get_json()
    # Moving it a little never clashes with itself; moving it onto a class does.
    moved = await client.patch(f"/api/v1/sittings/{sitting['id']}", headers=w["fac1"],
                               json={"room_id": w["room2"], **at(world, 200, 320)})
    assert moved.status_code == 200
    notes = await db.fetch("SELECT title FROM notifications WHERE user_id = $1 AND kind = 'exam_scheduled'"
                           " ORDER BY id", world.users["stu1"])
    assert [n["title"].rsplit(" ", 1)[1] for n in notes] == ["scheduled", "moved"]
    onto_class = await client.patch(f"/api/v1/sittings/{sitting['id']}", headers=w["fac1"],
                                    json={"room_id": world.room, **at(world, 0, 30)})
    assert onto_class.status_code == 409 and (await onto_class.get_json())["clashes"]
    assert (await client.patch(f"/api/v1/sittings/{sitting['id']}", headers=w["fac2"],
                               json={"room_id": w["room2"], **at(world, *FREE)})).status_code == 403


async def test_an_own_sitting_replaces_the_section_sitting(client, db, world) -> None:
    w = await exam_world(client, db, world)
    stu1 = world.users["stu1"]
    section = await (await schedule(client, w["fac1"], w["exam1"], section_id=w["A"], room_id=w["room2"],
                                    **at(world, *FREE))).get_json()
    # stu1's accommodation: same exam, overlapping time, another room: no clash with their section's sitting.
    own = await schedule(client, w["fac1"], w["exam1"], student_id=stu1, room_id=w["room3"], **at(world, 180, 330),
                         note="Extra 30 minutes")
    assert own.status_code == 201, await own.get_json()
    twice = await schedule(client, w["fac1"], w["exam1"], student_id=stu1, room_id=w["room3"], **at(world, 400, 460))
    assert twice.status_code == 409 and (await twice.get_json())["error"]["code"] == "conflict"
    listed = await (await client.get(f"/api/v1/assessments/{w['exam1']}/sittings", headers=w["fac1"])).get_json()
    sitters = {s["id"]: s["sitters"] for s in listed["items"]}
    assert sitters[section["id"]] == 0 and sitters[(await own.get_json())["id"]] == 1
    exams = await (await client.get(f"/api/v1/students/{stu1}/exams",
                                    headers=await bearer(client, stu1))).get_json()
    assert [(e["assessment_title"], e["student_id"], e["note"]) for e in exams["items"]] == [
        ("Final", stu1, "Extra 30 minutes")]


async def test_the_student_timetable_shows_eligibility_to_the_student_only(client, db, world) -> None:
    w = await exam_world(client, db, world)
    stu1, stu2 = world.users["stu1"], world.users["stu2"]
    await schedule(client, w["fac1"], w["exam1"], section_id=w["B"], room_id=w["room2"], **at(world, *FREE))
    await schedule(client, w["fac2"], w["exam2"], section_id=w["c2"], room_id=w["room3"], **at(world, 400, 460))
    mine = await (await client.get(f"/api/v1/students/{stu2}/exams", headers=await bearer(client, stu2))).get_json()
    [entry] = mine["items"]
    # stu2 missed c1's one held session: 0 %, below the condonable line: not eligible.
    assert (entry["course_id"], entry["attendance"]["eligibility"], entry["attendance"]["percentage"]) == (
        world.courses["c1"], "barred", 0.0)
    assert entry["attendance"]["eligible_pct"] == 75.0
    assert (await client.get(f"/api/v1/students/{stu2}/exams",
                             headers=await bearer(client, stu1))).status_code == 403
    # fac2 sees only their own course's exam on stu1's timetable (stu1 sits no c1 sitting here anyway).
    stu1_for_fac2 = await (await client.get(f"/api/v1/students/{stu1}/exams", headers=w["fac2"])).get_json()
    assert [e["course_id"] for e in stu1_for_fac2["items"]] == [world.courses["c2"]]
    refused = await schedule(client, w["fac2"], w["exam1"], section_id=w["A"], room_id=w["room2"], **at(world, *FREE))
    assert refused.status_code == 403
