"""Changes to the timetable regenerate sessions at once: holidays (add, change, delete), slots
(add, change), terms (dates, timezone) and sections; and faculty assigned to a course see its
sessions and live roster."""
from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone

import pytest
from web_helpers import bearer, page_login

UTC = timezone.utc


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


def _far_monday() -> date:
    # Holidays are campus-wide and the run's database is shared: a term of our own, weeks long,
    # somewhere far in the future where no other test's term or holiday lies.
    start = date(2200, 1, 6) + timedelta(weeks=random.randrange(0, 250_000))  # a Monday
    assert start.weekday() == 0
    return start


async def _term(client, world, admin, *, weeks: int = 3) -> dict:
    """A UTC term of ``weeks`` from a far Monday; two rooms; course c1's section A in it."""
    sfx, monday = world.suffix, _far_monday()
    term = await client.post("/api/v1/terms", headers=admin, json={
        "id": f"ft_{sfx}", "name": "Far term", "starts_on": str(monday),
        "ends_on": str(monday + timedelta(weeks=weeks, days=-1)), "timezone": "UTC"})
    assert term.status_code == 201, await term.get_data(as_text=True)
    for room in ("ra", "rb"):
        made = await client.post("/api/v1/rooms", headers=admin, json={
            "id": f"{room}_{sfx}", "name": room, "building": "Main"})
        assert made.status_code == 201
    section = await client.post("/api/v1/sections", headers=admin, json={
        "id": f"fs_{sfx}", "course_id": world.courses["c1"], "term_id": f"ft_{sfx}", "name": f"A{sfx}"})
    assert section.status_code == 201, await section.get_data(as_text=True)
    return {"term": f"ft_{sfx}", "monday": monday, "room": f"ra_{sfx}", "room2": f"rb_{sfx}",
            "section": f"fs_{sfx}"}


async def _sessions(client, admin, ids) -> list[dict]:
    page = await (await client.get(f"/api/v1/sessions?section_id={ids['section']}&limit=100",
                                   headers=admin)).get_json()
    return page["items"]


async def _slot(client, admin, ids, slot_id, weekday, starts="09:00", ends="10:00", room=None) -> dict:
    response = await client.post("/api/v1/timetable-slots", headers=admin, json={
        "id": slot_id, "section_id": ids["section"], "room_id": room or ids["room"], "weekday": weekday,
        "starts_time": starts, "ends_time": ends})
    assert response.status_code == 201, await response.get_data(as_text=True)
    return await response.get_json()


def _ours(body: dict, ids: dict) -> dict:
    (generation,) = [t for t in body["timetable"] if t["term_id"] == ids["term"]]
    return generation


async def test_holidays_regenerate_at_once_cancel_sessions_with_history_and_give_them_back(client, world, changes):
    admin = await bearer(client, world.username("admin"))
    ids = await _term(client, world, admin)
    monday = ids["monday"]
    added = _ours(await _slot(client, admin, ids, f"mon_{world.suffix}", "monday"), ids)
    assert added["created"] == 3
    _ours(await _slot(client, admin, ids, f"wed_{world.suffix}", "wednesday"), ids)
    sessions = await _sessions(client, admin, ids)
    assert len(sessions) == 6 and sorted(changes.ids) == sorted(s["session_id"] for s in sessions)
    week2 = {datetime.fromisoformat(s["starts_at"]).date(): s["session_id"] for s in sessions
             if monday + timedelta(days=7) <= datetime.fromisoformat(s["starts_at"]).date() < monday + timedelta(14)}
    mon2, wed2 = week2[monday + timedelta(days=7)], week2[monday + timedelta(days=9)]
    # The faculty already prepared Monday's class: it has history now.
    fac1 = await bearer(client, world.username("fac1"))
    assert (await client.put(f"/api/v1/sessions/{mon2}/topics", headers=fac1,
                             json={"topics": ["Register allocation"]})).status_code == 200

    changes.ids.clear()
    response = await client.post("/api/v1/holidays", headers=admin, json={
        "name": f"Break {world.suffix}", "starts_on": str(monday + timedelta(days=7)),
        "ends_on": str(monday + timedelta(days=9))})
    assert response.status_code == 201
    body = await response.get_json()
    holiday_id, ours = body["id"], _ours(body, ids)
    assert (ours["deleted"], ours["cancelled"], ours["cancelled_ids"]) == (1, 1, [mon2])
    assert mon2 in body["message"] and "cancelled rather than deleted" in body["message"]
    assert sorted(changes.ids) == sorted([mon2, wed2])
    detail = await (await client.get(f"/api/v1/sessions/{mon2}", headers=admin)).get_json()
    assert detail["status"] == "cancelled" and detail["cancel_reason"] == f"Holiday: Break {world.suffix}"
    assert detail["topics"] == ["Register allocation"]  # kept, with its history
    assert (await client.get(f"/api/v1/sessions/{wed2}", headers=admin)).status_code == 404
    generated = await (await client.post(f"/api/v1/terms/{ids['term']}/generate", headers=admin)).get_json()
    assert (generated["created"], generated["deleted"], generated["restored"]) == (0, 0, 0)

    # Shortened to the Wednesday only: Monday's class is back, as it was.
    changes.ids.clear()
    patched = await client.patch(f"/api/v1/holidays/{holiday_id}", headers=admin,
                                 json={"starts_on": str(monday + timedelta(days=9))})
    assert patched.status_code == 200, await patched.get_data(as_text=True)
    body = await patched.get_json()
    assert body["starts_on"] == str(monday + timedelta(days=9)) and _ours(body, ids)["restored"] == 1
    assert changes.ids == [mon2]
    detail = await (await client.get(f"/api/v1/sessions/{mon2}", headers=admin)).get_json()
    assert (detail["status"], detail["cancel_reason"]) == ("scheduled", None)
    assert [h["action"] for h in detail["history"]][:2] == ["restore", "cancel"]

    # Deleted: Wednesday's class is created again.
    deleted = await client.delete(f"/api/v1/holidays/{holiday_id}", headers=admin)
    assert deleted.status_code == 200 and _ours(await deleted.get_json(), ids)["created"] == 1
    assert {s["session_id"] for s in await _sessions(client, admin, ids)} >= {mon2, wed2}
    assert len(await _sessions(client, admin, ids)) == 6

    assert (await client.delete(f"/api/v1/holidays/{holiday_id}", headers=admin)).status_code == 404
    assert (await client.patch(f"/api/v1/holidays/{holiday_id}", headers=admin, json={})).status_code == 404
    bad = await client.patch("/api/v1/holidays/1", headers=admin, json={"ends_on": "someday"})
    assert bad.status_code == 400 and (await bad.get_json())["error"]["field"] == "ends_on"


async def test_a_changed_slot_moves_its_future_sessions(client, world, changes):
    admin = await bearer(client, world.username("admin"))
    ids = await _term(client, world, admin)
    slot = f"slot_{world.suffix}"
    await _slot(client, admin, ids, slot, "monday")
    await _slot(client, admin, ids, f"other_{world.suffix}", "tuesday", "11:00", "12:00")
    before = {s["session_id"] for s in await _sessions(client, admin, ids) if s["slot_id"] == slot}
    assert len(before) == 3

    # Another room, a later end: the same sessions follow.
    moved = await client.patch(f"/api/v1/timetable-slots/{slot}", headers=admin,
                               json={"room_id": ids["room2"], "ends_time": "10:30"})
    assert moved.status_code == 200, await moved.get_data(as_text=True)
    body = await moved.get_json()
    assert (body["room_id"], body["ends_time"], _ours(body, ids)["updated"]) == (ids["room2"], "10:30", 3)
    mine = [s for s in await _sessions(client, admin, ids) if s["slot_id"] == slot]
    assert {s["session_id"] for s in mine} == before
    assert all(s["room_id"] == ids["room2"] and datetime.fromisoformat(s["ends_at"]).time().minute == 30
               for s in mine)

    # Another day: the old occurrences go, new ones come.
    changes.ids.clear()
    body = await (await client.patch(f"/api/v1/timetable-slots/{slot}", headers=admin,
                                     json={"weekday": "thursday"})).get_json()
    assert (_ours(body, ids)["deleted"], _ours(body, ids)["created"]) == (3, 3)
    assert set(changes.ids) >= before
    days = {datetime.fromisoformat(s["starts_at"]).weekday() for s in await _sessions(client, admin, ids)
            if s["slot_id"] == slot}
    assert days == {3}

    # Refusals: an overlap with the section's other slot, an end before the start, unknown slot or room.
    clash = await client.patch(f"/api/v1/timetable-slots/{slot}", headers=admin,
                               json={"weekday": 1, "starts_time": "11:30", "ends_time": "12:30"})
    assert clash.status_code == 409 and (await clash.get_json())["error"]["field"] == "section_id"
    backwards = await client.patch(f"/api/v1/timetable-slots/{slot}", headers=admin, json={"ends_time": "08:00"})
    assert backwards.status_code == 400 and (await backwards.get_json())["error"]["field"] == "ends_time"
    assert (await client.patch("/api/v1/timetable-slots/nope", headers=admin, json={})).status_code == 404
    assert (await client.patch(f"/api/v1/timetable-slots/{slot}", headers=admin,
                               json={"room_id": "no-such-room"})).status_code == 404
    # A validity limit, then cleared with null.
    limited = await (await client.patch(f"/api/v1/timetable-slots/{slot}", headers=admin, json={
        "valid_until": str(ids["monday"] + timedelta(days=6))})).get_json()
    assert _ours(limited, ids)["deleted"] == 2
    cleared = await (await client.patch(f"/api/v1/timetable-slots/{slot}", headers=admin,
                                        json={"valid_until": None})).get_json()
    assert cleared["valid_until"] is None and _ours(cleared, ids)["created"] == 2


async def test_term_dates_and_timezone_regenerate_and_sections_can_be_renamed(client, world, changes):
    admin = await bearer(client, world.username("admin"))
    ids = await _term(client, world, admin)
    await _slot(client, admin, ids, f"slot_{world.suffix}", "monday")
    path = f"/api/v1/terms/{ids['term']}"

    renamed = await (await client.patch(path, headers=admin, json={"name": "Renamed"})).get_json()
    assert renamed["name"] == "Renamed" and renamed["timetable"] == [] and renamed["message"] == "No sessions changed."
    shorter = await (await client.patch(path, headers=admin, json={
        "ends_on": str(ids["monday"] + timedelta(days=13))})).get_json()
    assert _ours(shorter, ids)["deleted"] == 1 and len(await _sessions(client, admin, ids)) == 2
    backwards = await client.patch(path, headers=admin, json={"ends_on": str(ids["monday"] - timedelta(days=1))})
    assert backwards.status_code == 400 and (await backwards.get_json())["error"]["field"] == "ends_on"

    # Another timezone: 09:00 is now 09:00 in Kolkata (03:30 UTC).
    moved = await client.patch(path, headers=admin, json={"timezone": "Asia/Kolkata"})
    assert moved.status_code == 200
    assert _ours(await moved.get_json(), ids)["created"] == 2
    starts = {datetime.fromisoformat(s["starts_at"]).astimezone(UTC).time().isoformat()
              for s in await _sessions(client, admin, ids)}
    assert starts == {"03:30:00"}
    assert (await client.patch(path, headers=admin, json={"timezone": "Nowhere/City"})).status_code == 400
    replaced = await client.put(path, headers=admin, json={
        "name": "Put", "starts_on": str(ids["monday"]), "ends_on": str(ids["monday"] + timedelta(days=20)),
        "timezone": "UTC"})
    assert replaced.status_code == 200 and _ours(await replaced.get_json(), ids)["created"] == 3
    assert (await client.put(path, headers=admin, json={"starts_on": "2030-01-01"})).status_code == 400
    assert (await client.patch("/api/v1/terms/nope", headers=admin, json={"name": "x"})).status_code == 404

    # Sections: rename, change and clear the capacity; names stay unique per course and term.
    section = f"/api/v1/sections/{ids['section']}"
    body = await (await client.patch(section, headers=admin, json={"name": "B", "capacity": 30})).get_json()
    assert (body["name"], body["capacity"], body["term_id"]) == ("B", 30, ids["term"])
    assert (await (await client.patch(section, headers=admin, json={"capacity": None})).get_json())["capacity"] is None
    other = await client.post("/api/v1/sections", headers=admin, json={
        "course_id": world.courses["c1"], "term_id": ids["term"], "name": "C"})
    assert other.status_code == 201
    taken = await client.patch(section, headers=admin, json={"name": "C"})
    assert taken.status_code == 409 and (await taken.get_json())["error"]["field"] == "name"
    assert (await client.patch(section, headers=admin, json={"capacity": 0})).status_code == 400
    assert (await client.patch("/api/v1/sections/nope", headers=admin, json={"name": "x"})).status_code == 404
    fac1 = await bearer(client, world.username("fac1"))
    assert (await client.patch(section, headers=fac1, json={"name": "D"})).status_code == 403


async def test_assigned_faculty_see_the_courses_sessions_and_live_roster(client, world):
    admin = await bearer(client, world.username("admin"))
    live1 = world.sessions["live1"]  # course c1, coordinated by fac1
    fac2 = await bearer(client, world.username("fac2"))
    assert (await client.get(f"/api/v1/sessions/{live1}/roster", headers=fac2)).status_code == 403
    await page_login(client, world.username("fac2"))
    assert (await client.get(f"/faculty/sessions/{live1}")).status_code == 403
    assert f'data-session-id="{live1}"' not in await (await client.get("/faculty")).get_data(as_text=True)

    assigned = await client.post("/api/v1/faculty-assignments", headers=admin, json={
        "course_id": world.courses["c1"], "faculty_id": world.users["fac2"], "role": "assistant"})
    assert assigned.status_code == 201
    roster = await client.get(f"/faculty/sessions/{live1}")
    assert roster.status_code == 200
    assert f'data-student-id="{world.users["stu1"]}"' in await roster.get_data(as_text=True)
    assert (await client.get(f"/api/v1/sessions/{live1}/roster", headers=fac2)).status_code == 200
    today = await (await client.get("/faculty")).get_data(as_text=True)
    assert f'data-session-id="{live1}"' in today
    assert f'data-session-id="{world.sessions["live2"]}"' in today  # still their own course too

    # Unassigned again: refused again.
    assert (await client.delete(f"/api/v1/faculty-assignments/{(await assigned.get_json())['id']}",
                                headers=admin)).status_code == 200
    assert (await client.get(f"/faculty/sessions/{live1}")).status_code == 403
    assert (await client.get("/faculty/sessions/nope")).status_code == 404
