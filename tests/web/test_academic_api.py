"""Academic workflows end to end through the JSON API: model, CSV import, timetable, sessions, ownership."""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

import pytest
from web_helpers import bearer

from web.routes import academic, sessions_api


class Changes:
    """Records what the web tells the scheduler (WebContext.sessions_changed)."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    async def __call__(self, session_ids) -> None:
        self.ids.extend(session_ids)


@pytest.fixture
def changes(ctx) -> Changes:
    ctx.sessions_changed = Changes()
    return ctx.sessions_changed


def _today(world) -> date:
    return world.now.astimezone(timezone.utc).date()


async def _setup_term(client, world, admin) -> dict:
    """A term around today, a room, a course taught by fac1 with section A, one slot a day."""
    sfx, today = world.suffix, _today(world)
    term = await client.post("/api/v1/terms", headers=admin, json={
        "id": f"term_{sfx}", "name": "Autumn", "starts_on": str(today - timedelta(days=7)),
        "ends_on": str(today + timedelta(days=20))})
    assert term.status_code == 201, await term.get_data(as_text=True)
    room = await client.post("/api/v1/rooms", headers=admin, json={
        "id": f"lab_{sfx}", "name": "Lab", "building": "Main", "room_type": "lab", "capacity": 40})
    assert room.status_code == 201
    course = await client.post("/api/v1/courses", headers=admin, json={
        "id": f"cs_{sfx}", "code": f"CS-{sfx}", "title": "Compilers", "faculty_id": world.users["fac1"]})
    assert course.status_code == 201, await course.get_data(as_text=True)
    section = await client.post("/api/v1/sections", headers=admin, json={
        "id": f"sec_{sfx}", "course_id": f"cs_{sfx}", "term_id": f"term_{sfx}", "name": "A"})
    assert section.status_code == 201
    return {"term": f"term_{sfx}", "room": f"lab_{sfx}", "course": f"cs_{sfx}", "section": f"sec_{sfx}",
            "code": f"CS-{sfx}"}


async def test_csv_import_is_all_or_nothing_with_every_bad_line(client, world, ctx):
    admin = await bearer(client, world.username("admin"))
    ids = await _setup_term(client, world, admin)
    bad = (f"roll_number,course_code,section\n"
           f"R-stu1-{world.suffix},{ids['code']},A\n"
           f"R-nobody,{ids['code']},A\n"
           f"R-stu2-{world.suffix},NOPE,A\n"
           f"R-stu3-{world.suffix},{ids['code']},Z\n"
           f"R-stu1-{world.suffix},{ids['code']},A\n")
    response = await client.post(f"/api/v1/enrolments/import?term_id={ids['term']}", data=bad,
                                 headers={**admin, "Content-Type": "text/csv"})
    assert response.status_code == 422
    body = await response.get_json()
    assert body["error"]["code"] == "import_rejected"
    assert [(e["line"], e["field"]) for e in body["errors"]] == [
        (3, "roll_number"), (4, "course_code"), (5, "section"), (6, None)]
    listed = await (await client.get(f"/api/v1/enrolments?section_id={ids['section']}", headers=admin)).get_json()
    assert listed["total"] == 0  # nothing applied

    good = f"student_id,section_id\n{world.users['stu1']},{ids['section']}\n{world.users['stu2']},{ids['section']}\n"
    dry = await client.post("/api/v1/enrolments/import?dry_run=1", headers=admin, json={"csv": good})
    assert (await dry.get_json()) == {"rows": 2, "created": 2, "moved": 0, "unchanged": 0, "dry_run": True}
    done = await client.post("/api/v1/enrolments/import", data=good, headers={**admin, "Content-Type": "text/csv"})
    assert (await done.get_json())["created"] == 2
    again = await client.post("/api/v1/enrolments/import", data=good, headers={**admin, "Content-Type": "text/csv"})
    assert (await again.get_json())["unchanged"] == 2
    listed = await (await client.get(f"/api/v1/enrolments?section_id={ids['section']}", headers=admin)).get_json()
    assert {e["student_id"] for e in listed["items"]} == {world.users["stu1"], world.users["stu2"]}
    # fac2 does not teach the course: their listing does not show it.
    fac2 = await bearer(client, world.username("fac2"))
    assert (await (await client.get(f"/api/v1/enrolments?section_id={ids['section']}", headers=fac2)).get_json())[
        "total"] == 0


async def test_import_takes_files_over_the_default_body_limit_but_not_over_2_mib(client, world):
    admin = await bearer(client, world.username("admin"))
    padding = "\n" * (100 * 1024)  # blank lines are skipped; the body is over 64 KiB
    body = f"student_id,section_id\n{padding}nobody,nowhere\n"
    response = await client.post("/api/v1/enrolments/import", data=body, headers={**admin, "Content-Type": "text/csv"})
    assert response.status_code == 422
    assert (await response.get_json())["errors"][0]["line"] == 100 * 1024 + 2
    huge = "student_id,section_id\n" + "x,y\n" * (academic.IMPORT_MAX_BYTES // 4 + 10)
    response = await client.post("/api/v1/enrolments/import", data=huge, headers={**admin, "Content-Type": "text/csv"})
    assert response.status_code == 413
    # Other routes keep the 64 KiB limit.
    response = await client.post("/api/v1/holidays", headers=admin, json={"name": "x" * 70_000, "starts_on": "2025-01-01"})
    assert response.status_code == 413


async def test_timetable_generation_is_idempotent_and_skips_holidays(client, world, changes):
    admin = await bearer(client, world.username("admin"))
    ids = await _setup_term(client, world, admin)
    today = _today(world)
    created = []
    for weekday in range(7):
        slot = await client.post("/api/v1/timetable-slots", headers=admin, json={
            "id": f"slot{weekday}_{world.suffix}", "section_id": ids["section"], "room_id": ids["room"],
            "weekday": weekday, "starts_time": "23:00", "ends_time": "23:50"})
        assert slot.status_code == 201, await slot.get_data(as_text=True)
        (generation,) = (await slot.get_json())["timetable"]  # adding a slot creates its sessions at once
        created += generation["created_ids"]
    assert created and sorted(changes.ids) == sorted(created)
    clash = await client.post("/api/v1/timetable-slots", headers=admin, json={
        "section_id": ids["section"], "room_id": ids["room"], "weekday": "monday",
        "starts_time": "23:30", "ends_time": "23:45"})
    assert clash.status_code == 409
    holiday_day = today + timedelta(days=3)
    holiday = await client.post("/api/v1/holidays", headers=admin, json={
        "name": f"Holiday {world.suffix}", "starts_on": str(holiday_day)})
    assert holiday.status_code == 201
    (ours,) = [t for t in (await holiday.get_json())["timetable"] if t["term_id"] == ids["term"]]
    assert ours["deleted"] == 1 and ours["skipped_holidays"] >= 1  # that day's session went at once

    generate = f"/api/v1/terms/{ids['term']}/generate"
    changes.ids.clear()
    preview = await (await client.post(generate + "?dry_run=1", headers=admin)).get_json()
    assert changes.ids == [] and preview["created"] == 0
    first = await (await client.post(generate, headers=admin)).get_json()
    assert first["created"] == 0 and first["kept"] == len(created) - 1 and first["skipped_holidays"] >= 1

    sessions = await (await client.get(f"/api/v1/sessions?section_id={ids['section']}&limit=100",
                                       headers=admin)).get_json()
    days = {datetime.fromisoformat(s["starts_at"]).date() for s in sessions["items"]}
    assert holiday_day not in days and all(s["origin"] == "timetable" for s in sessions["items"])
    assert all(s["grace_minutes"] == 10 and s["opens_minutes_before"] == 15 for s in sessions["items"])

    # Deleting a slot removes its future sessions at once.
    slot_weekday = holiday_day.weekday() - 1 if holiday_day.weekday() else 6
    removed = await (await client.delete(f"/api/v1/timetable-slots/slot{slot_weekday}_{world.suffix}",
                                         headers=admin)).get_json()
    assert removed["deleted"] >= 1
    after = await (await client.get(f"/api/v1/sessions?section_id={ids['section']}&limit=100",
                                    headers=admin)).get_json()
    assert after["total"] == sessions["total"] - removed["deleted"]


async def test_session_lifecycle_by_its_faculty(client, world, changes):
    fac1 = await bearer(client, world.username("fac1"))
    start = world.now + timedelta(hours=2)
    body = {"course_id": world.courses["c1"], "room_id": world.room, "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=1)).isoformat(), "topics": ["Parsing", " parsing ", "LR(1)"]}
    created = await client.post("/api/v1/sessions", headers=fac1, json=body)
    assert created.status_code == 201, await created.get_data(as_text=True)
    session = await created.get_json()
    sid = session["session_id"]
    assert session["topics"] == ["Parsing", "LR(1)"] and session["origin"] == "manual"
    assert changes.ids == [sid]
    # The same room at the same time is taken.
    assert (await client.post("/api/v1/sessions", headers=fac1, json=body)).status_code == 409

    later = start + timedelta(days=1)
    moved = await (await client.post(f"/api/v1/sessions/{sid}/reschedule", headers=fac1, json={
        "starts_at": later.isoformat(), "ends_at": (later + timedelta(hours=1)).isoformat()})).get_json()
    assert moved["session_id"] == sid
    assert datetime.fromisoformat(moved["rescheduled_from"]) == start
    opened = await (await client.post(f"/api/v1/sessions/{sid}/open", headers=fac1)).get_json()
    assert opened["status"] == "open" and datetime.fromisoformat(opened["opens_at"]) <= world.now + timedelta(minutes=1)
    assert (await client.post(f"/api/v1/sessions/{sid}/reschedule", headers=fac1, json={
        "starts_at": later.isoformat(), "ends_at": (later + timedelta(hours=1)).isoformat()})).status_code == 409
    topics = await client.put(f"/api/v1/sessions/{sid}/topics", headers=fac1, json={"topics": ["SSA form"]})
    assert (await topics.get_json())["topics"] == ["SSA form"]
    assert (await client.post(f"/api/v1/sessions/{sid}/cancel", headers=fac1, json={})).status_code == 400
    cancelled = await (await client.post(f"/api/v1/sessions/{sid}/cancel", headers=fac1,
                                         json={"reason": "Instructor ill"})).get_json()
    assert cancelled["status"] == "cancelled" and cancelled["cancel_reason"] == "Instructor ill"
    assert (await client.post(f"/api/v1/sessions/{sid}/open", headers=fac1)).status_code == 409
    detail = await (await client.get(f"/api/v1/sessions/{sid}", headers=fac1)).get_json()
    assert [h["action"] for h in detail["history"]] == ["cancel", "topics", "open", "reschedule", "create"]
    assert all(h["actor"] == world.users["fac1"] for h in detail["history"])
    assert changes.ids.count(sid) == 4  # create, reschedule, open, cancel


async def test_closing_a_live_session_early_ends_it_now(client, world, changes):
    fac1 = await bearer(client, world.username("fac1"))
    live = world.sessions["live1"]
    closed = await (await client.post(f"/api/v1/sessions/{live}/close", headers=fac1)).get_json()
    assert closed["status"] == "closed" and closed["closed_by"] == world.users["fac1"]
    assert abs(datetime.fromisoformat(closed["ends_at"]) - world.now) < timedelta(seconds=5)
    assert changes.ids == [live]
    today = await (await client.get("/api/v1/faculty/today", headers=fac1)).get_json()
    assert live in {s["session_id"] for s in today["items"]}
    assert world.sessions["live2"] not in {s["session_id"] for s in today["items"]}  # fac2's course


async def test_faculty_manage_only_their_courses_and_assignments_grant_it(client, world):
    fac2 = await bearer(client, world.username("fac2"))
    admin = await bearer(client, world.username("admin"))
    live1 = world.sessions["live1"]
    assert (await client.post(f"/api/v1/sessions/{live1}/close", headers=fac2)).status_code == 403
    assert (await client.get(f"/api/v1/sessions/{live1}", headers=fac2)).status_code == 403
    assert (await client.get(f"/api/v1/courses/{world.courses['c1']}/rules", headers=fac2)).status_code == 403
    assigned = await client.post("/api/v1/faculty-assignments", headers=admin, json={
        "course_id": world.courses["c1"], "faculty_id": world.users["fac2"], "role": "assistant"})
    assert assigned.status_code == 201
    assert (await client.get(f"/api/v1/sessions/{live1}", headers=fac2)).status_code == 200
    courses = await (await client.get("/api/v1/courses", headers=fac2)).get_json()
    assert {c["id"] for c in courses["items"]} == {world.courses["c1"], world.courses["c2"]}
    assert (await client.get("/api/v1/sessions/nope", headers=fac2)).status_code == 404


async def test_course_rules_default_then_saved_and_copied_to_new_sessions(client, world):
    admin = await bearer(client, world.username("admin"))
    course = world.courses["c1"]
    rules = await (await client.get(f"/api/v1/courses/{course}/rules", headers=admin)).get_json()
    assert rules["customised"] is False and rules["eligible_pct"] == 75
    bad = await client.put(f"/api/v1/courses/{course}/rules", headers=admin, json={"condonable_pct": 80})
    assert bad.status_code == 400 and (await bad.get_json())["error"]["field"] == "condonable_pct"
    saved = await (await client.put(f"/api/v1/courses/{course}/rules", headers=admin, json={
        "grace_minutes": 5, "opens_minutes_before": 20, "late_weight": 0.5})).get_json()
    assert saved["customised"] is True and saved["grace_minutes"] == 5 and saved["late_weight"] == 0.5
    start = world.now + timedelta(days=3)
    session = await (await client.post("/api/v1/sessions", headers=admin, json={
        "course_id": course, "room_id": world.room, "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=1)).isoformat()})).get_json()
    assert (session["grace_minutes"], session["opens_minutes_before"]) == (5, 20)
    fac1 = await bearer(client, world.username("fac1"))
    assert (await client.put(f"/api/v1/courses/{course}/rules", headers=fac1, json={})).status_code == 403


async def test_bad_input_is_a_clear_error_naming_the_field(client, world):
    admin = await bearer(client, world.username("admin"))
    cases = [
        ("/api/v1/terms", {"name": "T", "starts_on": "2025-13-01", "ends_on": "2025-12-01"}, "starts_on"),
        ("/api/v1/terms", {"name": "T", "starts_on": "2025-02-01", "ends_on": "2025-01-01"}, "ends_on"),
        ("/api/v1/terms", {"name": "T", "starts_on": "2025-01-01", "ends_on": "2025-02-01", "timezone": "Nowhere"},
         "timezone"),
        ("/api/v1/courses", {"code": "X", "title": "Y", "faculty_id": world.users["stu1"]}, "faculty_id"),
        ("/api/v1/timetable-slots", {"section_id": "s", "room_id": "r", "weekday": 9, "starts_time": "09:00",
                                     "ends_time": "10:00"}, "weekday"),
        ("/api/v1/sessions", {"course_id": world.courses["c1"], "room_id": world.room,
                              "starts_at": "2030-01-01T10:00:00", "ends_at": "2030-01-01T11:00:00+00:00"},
         "starts_at"),
    ]
    for path, body, field in cases:
        response = await client.post(path, headers=admin, json=body)
        assert response.status_code == 400, (path, await response.get_data(as_text=True))
        assert (await response.get_json())["error"]["field"] == field, path


_OPERATIONS = [(method.upper(), path) for module in (academic, sessions_api)
               for path, item in module.OPENAPI_PATHS.items() for method in item]


def _url(path: str) -> str:
    return re.sub(r"{[^}]+}", "1", path)


async def test_every_academic_operation_refuses_students_and_anonymous_callers(client, world):
    student = await bearer(client, world.username("stu1"))
    for method, path in _OPERATIONS:
        anonymous = await client.open(_url(path), method=method, json={})
        assert anonymous.status_code == 401, (method, path)
        refused = await client.open(_url(path), method=method, headers=student, json={})
        assert refused.status_code == 403, (method, path)
        assert "student" not in (academic.OPENAPI_PATHS.get(path) or sessions_api.OPENAPI_PATHS[path])[
            method.lower()]["x-roles"]
