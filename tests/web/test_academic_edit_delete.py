"""Edit and delete for every academic thing the admin page can add: roles, refusals that explain
themselves (nothing is orphaned, nothing deleted), and the audit entry of each delete."""
from __future__ import annotations

from datetime import date, timedelta

from web_helpers import bearer


async def _model(client, world, admin) -> dict[str, str]:
    """A term, a room, a course taught by fac1 and a section of it: nothing refers to the room yet."""
    sfx, today = world.suffix, date.today()
    ids = {"term": f"t_{sfx}", "room": f"r_{sfx}", "course": f"c_{sfx}", "section": f"s_{sfx}"}
    for path, body in (
        ("/api/v1/terms", {"id": ids["term"], "name": "Spring", "starts_on": str(today),
                           "ends_on": str(today + timedelta(days=30))}),
        ("/api/v1/rooms", {"id": ids["room"], "name": "B-101", "building": "North", "capacity": 30}),
        ("/api/v1/courses", {"id": ids["course"], "code": f"ED-{sfx}", "title": "Editing",
                             "faculty_id": world.users["fac1"]}),
        ("/api/v1/sections", {"id": ids["section"], "course_id": ids["course"], "term_id": ids["term"],
                              "name": "A"}),
    ):
        response = await client.post(path, headers=admin, json=body)
        assert response.status_code == 201, await response.get_data(as_text=True)
    return ids


async def _audit_entries(db, entity: str, entity_id: str) -> list[str]:
    rows = await db.fetch("SELECT action FROM audit_log WHERE entity = $1 AND entity_id = $2 ORDER BY id",
                          entity, entity_id)
    return [r["action"] for r in rows]


async def test_patch_room_and_course_change_only_the_given_fields(client, world):
    admin = await bearer(client, world.username("admin"))
    ids = await _model(client, world, admin)
    room = await client.patch(f"/api/v1/rooms/{ids['room']}", headers=admin, json={"name": " B-102 "})
    assert room.status_code == 200
    assert await room.get_json() == {"id": ids["room"], "name": "B-102", "building": "North",
                                     "room_type": "lecture_hall", "capacity": 30}
    cleared = await client.patch(f"/api/v1/rooms/{ids['room']}", headers=admin, json={"capacity": None})
    assert (await cleared.get_json())["capacity"] is None
    course = await client.patch(f"/api/v1/courses/{ids['course']}", headers=admin, json={"title": "Revising"})
    assert course.status_code == 200
    body = await course.get_json()
    assert (body["title"], body["code"], body["faculty_id"]) == ("Revising", f"ED-{world.suffix}",
                                                                 world.users["fac1"])
    bad = await client.patch(f"/api/v1/courses/{ids['course']}", headers=admin,
                             json={"faculty_id": world.users["stu1"]})
    assert bad.status_code == 400 and (await bad.get_json())["error"]["field"] == "faculty_id"
    missing = await client.patch(f"/api/v1/rooms/nope-{world.suffix}", headers=admin, json={"name": "X"})
    assert missing.status_code == 404


async def test_only_admin_may_edit_or_delete(client, world):
    admin = await bearer(client, world.username("admin"))
    ids = await _model(client, world, admin)
    for user in ("fac1", "stu1", "ops"):
        headers = await bearer(client, world.username(user))
        for method, path in (("patch", f"/api/v1/rooms/{ids['room']}"), ("delete", f"/api/v1/rooms/{ids['room']}"),
                             ("patch", f"/api/v1/courses/{ids['course']}"),
                             ("delete", f"/api/v1/courses/{ids['course']}"),
                             ("delete", f"/api/v1/sections/{ids['section']}"),
                             ("delete", f"/api/v1/terms/{ids['term']}")):
            kwargs = {"json": {"name": "x"}} if method == "patch" else {}
            response = await getattr(client, method)(path, headers=headers, **kwargs)
            assert response.status_code == 403, (user, method, path)
    listed = await client.get("/api/v1/rooms?limit=500", headers=admin)
    assert ids["room"] in {r["id"] for r in (await listed.get_json())["items"]}


async def test_deletes_refuse_while_something_refers_and_say_why(client, world, db):
    admin = await bearer(client, world.username("admin"))
    ids = await _model(client, world, admin)
    slot = await client.post("/api/v1/timetable-slots", headers=admin, json={
        "section_id": ids["section"], "room_id": ids["room"], "weekday": 2, "starts_time": "09:00",
        "ends_time": "10:00"})
    assert slot.status_code == 201, await slot.get_data(as_text=True)

    room = await client.delete(f"/api/v1/rooms/{ids['room']}", headers=admin)
    assert room.status_code == 409
    error = (await room.get_json())["error"]
    assert error["code"] == "conflict" and error["field"] == "room_id"
    assert "Room B-101 cannot be deleted" in error["message"] and "timetable slot" in error["message"]
    assert "Move its timetable slots" in error["message"]

    term = await client.delete(f"/api/v1/terms/{ids['term']}", headers=admin)
    assert term.status_code == 409 and "1 section still refer" in (await term.get_json())["error"]["message"]
    course = await client.delete(f"/api/v1/courses/{ids['course']}", headers=admin)
    assert course.status_code == 409 and "Delete its sections first" in (await course.get_json())["error"]["message"]
    section = await client.delete(f"/api/v1/sections/{ids['section']}", headers=admin)
    assert section.status_code == 409 and "timetable slot" in (await section.get_json())["error"]["message"]
    # Refused: everything is still there, and nothing was audited as deleted.
    assert await db.fetchval("SELECT count(*) FROM rooms WHERE id = $1", ids["room"]) == 1
    assert await _audit_entries(db, "room", ids["room"]) == []

    # A room holding a real session (the world's) is kept for its records.
    held = await db.fetchval("SELECT room_id FROM class_sessions WHERE id = $1", world.sessions["live1"])
    refused = await client.delete(f"/api/v1/rooms/{held}", headers=admin)
    assert refused.status_code == 409 and "class session" in (await refused.get_json())["error"]["message"]


async def test_deletes_in_order_succeed_and_are_audited(client, world, db):
    admin = await bearer(client, world.username("admin"))
    ids = await _model(client, world, admin)
    for kind, path in (("section", f"/api/v1/sections/{ids['section']}"),
                       ("course", f"/api/v1/courses/{ids['course']}"),
                       ("term", f"/api/v1/terms/{ids['term']}"),
                       ("room", f"/api/v1/rooms/{ids['room']}")):
        response = await client.delete(path, headers=admin)
        assert response.status_code == 200, (kind, await response.get_data(as_text=True))
        assert (await response.get_json())["id"] == ids[kind]
        assert await _audit_entries(db, kind, ids[kind]) == ["deleted"]
        again = await client.delete(path, headers=admin)
        assert again.status_code == 404
    assert await db.fetchval("SELECT count(*) FROM faculty_assignments WHERE course_id = $1", ids["course"]) == 0
