"""Regression tests of issue 15's wrong numbers: one definition of a *held* session everywhere.

- Approving leave for days still to come excused those sessions ahead, and an excused record counted
  the session as held: a course went from 13/18 to 14/17 held/remaining before anything happened.
- The course report's "Sessions held" counted ended sessions while each student's held count also
  counted the running session they had checked in to (12 against 13).
- The term chart started at the first session, which may be before the term does.

A session is held once it has ended (closed, or its end has passed); whatever a record says about a
session not yet held (a check-in while it runs, an excused leave written ahead) waits until then.

World (tests/web/conftest.py): in c1, past1 is closed (stu1 present, stu2 no record) and live1 is
running (stu1 present); in c2 live2 is running (no records).
"""
from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta, timezone

import pytest
from web_helpers import bearer

pytestmark = pytest.mark.integration


def course_of(body: dict, course_id: str) -> dict:
    return next(c for c in body["courses"] if c["course_id"] == course_id)


async def counts(client, world, student: str, course: str) -> dict:
    headers = await bearer(client, world.users[student])
    body = await (await client.get(f"/api/v1/students/{world.users[student]}/standing", headers=headers)).get_json()
    return course_of(body, world.courses[course])["counts"]


async def free_days(db, world, length: int) -> date:
    """A first day of ``length`` days ahead on which no test made a (campus-wide) holiday."""
    first = world.now.date() + timedelta(days=random.randrange(100, 300))
    while await db.fetchval("SELECT EXISTS (SELECT 1 FROM holidays WHERE starts_on <= $2 AND ends_on >= $1)",
                            first, first + timedelta(days=length)):
        first += timedelta(days=length + 1)
    return first


async def test_approved_future_leave_does_not_count_sessions_as_held(client, db, world) -> None:
    # Two classes of c2 on days still to come, then stu3 takes leave for both days and it is approved.
    first = await free_days(db, world, 2)
    future = [f"future{i}_{world.suffix}" for i in range(2)]
    for sid, day in zip(future, (first, first + timedelta(days=1))):
        starts = datetime.combine(day, time(10), timezone.utc)
        await db.execute(
            "INSERT INTO class_sessions (id, course_id, room_id, starts_at, ends_at) VALUES ($1, $2, $3, $4, $5)",
            sid, world.courses["c2"], world.room, starts, starts + timedelta(hours=1))
    before = await counts(client, world, "stu3", "c2")
    assert (before["held"], before["remaining"]) == (0, 3)  # live2 running, two to come

    stu3, fac2 = await bearer(client, world.users["stu3"]), await bearer(client, world.users["fac2"])
    leave = await (await client.post("/api/v1/leave", headers=stu3, json={
        "starts_on": first.isoformat(), "ends_on": (first + timedelta(days=1)).isoformat(),
        "reason": "Family wedding"})).get_json()
    approved = await (await client.post(f"/api/v1/leave/{leave['id']}/approve", headers=fac2, json={})).get_json()
    assert approved["status"] == "approved" and approved["excused_sessions"] == 2  # the leave is on record

    after = await counts(client, world, "stu3", "c2")
    assert after == before  # nothing has been held yet: still 0 held, 3 remaining, nothing excused
    series = await (await client.get(
        f"/api/v1/students/{world.users['stu3']}/courses/{world.courses['c2']}/series", headers=stu3)).get_json()
    assert series["points"] == []


async def test_report_sessions_held_is_each_students_held_count(client, world, clock) -> None:
    fac1 = await bearer(client, world.users["fac1"])
    report_path = f"/api/v1/courses/{world.courses['c1']}/report"
    report = await (await client.get(report_path, headers=fac1)).get_json()
    # live1 is running and stu1 has checked in: it is not held yet, for stu1 no more than for the report.
    assert report["summary"]["sessions_held"] == 1
    assert {i["student_id"]: i["counts"]["held"] for i in report["items"]} == {
        world.users["stu1"]: 1, world.users["stu2"]: 1}
    stu1 = report["items"][0] if report["items"][0]["student_id"] == world.users["stu1"] else report["items"][1]
    assert (stu1["counts"]["present"], stu1["counts"]["remaining"]) == (1, 1)
    course_series = await (await client.get(f"/api/v1/courses/{world.courses['c1']}/series", headers=fac1)).get_json()
    student_series = await (await client.get(
        f"/api/v1/students/{world.users['stu1']}/courses/{world.courses['c1']}/series", headers=fac1)).get_json()
    assert len(course_series["points"]) == len(student_series["points"]) == 1

    clock.advance(3600)  # live1 is over: held for everyone, stu2 without a record absent
    fac1 = await bearer(client, world.users["fac1"])  # the first token has expired meanwhile
    report = await (await client.get(report_path, headers=fac1)).get_json()
    assert report["summary"]["sessions_held"] == 2
    held = {i["student_id"]: (i["counts"]["held"], i["counts"]["present"], i["counts"]["absent"])
            for i in report["items"]}
    assert held == {world.users["stu1"]: (2, 2, 0), world.users["stu2"]: (2, 0, 2)}


async def test_series_carry_the_term_the_chart_starts_at(client, db, world) -> None:
    # c1 is taught in a term that started ten days ago (its section, and the students in it).
    term, section = f"term_{world.suffix}", f"sec_{world.suffix}"
    starts_on = world.now.date() - timedelta(days=10)
    await db.execute("INSERT INTO terms (id, name, starts_on, ends_on, timezone) VALUES ($1, 'Autumn', $2, $3,"
                     " 'Asia/Kolkata')", term, starts_on, starts_on + timedelta(days=120))
    await db.execute("INSERT INTO sections (id, course_id, term_id, name) VALUES ($1, $2, $3, 'A')",
                     section, world.courses["c1"], term)
    await db.execute("UPDATE enrolments SET section_id = $2 WHERE course_id = $1", world.courses["c1"], section)
    expected = {"term_id": term, "name": "Autumn", "starts_on": starts_on.isoformat(),
                "ends_on": (starts_on + timedelta(days=120)).isoformat()}
    fac1 = await bearer(client, world.users["fac1"])
    for path in (f"/api/v1/courses/{world.courses['c1']}/series",
                 f"/api/v1/courses/{world.courses['c1']}/series?section_id={section}",
                 f"/api/v1/students/{world.users['stu1']}/courses/{world.courses['c1']}/series"):
        body = await (await client.get(path, headers=fac1)).get_json()
        term_json = body["term"]
        # Midnight at the term's start where the term is (India: 18:30 UTC the day before).
        assert term_json.pop("starts_at").startswith(f"{starts_on - timedelta(days=1)}T18:30:00"), path
        assert term_json == expected, path
        assert all(p["starts_at"] >= f"{starts_on - timedelta(days=1)}T18:30" for p in body["points"])
    # c2 has no section in any term: no term, the chart starts at its first session.
    fac2 = await bearer(client, world.users["fac2"])
    body = await (await client.get(f"/api/v1/courses/{world.courses['c2']}/series", headers=fac2)).get_json()
    assert body["term"] is None
