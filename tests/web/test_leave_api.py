"""Leave end to end through the API: apply (with a document), overlap, who may see and decide,
approval excusing absences (past and future), cancellation restoring exactly what was there,
a check-in during the leave winning, and the live-actor and notification hooks."""
from __future__ import annotations

import base64
import random
from datetime import date, datetime, time, timedelta, timezone

import pytest
from web_helpers import bearer

from hub.core.records import AttendanceMark, Commit, internal_key
from hub.db.ingest import write_batch

pytestmark = pytest.mark.integration

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


class Recorder:
    """Stands in for the hub's live session actors: records what the web told them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    async def __call__(self, session_id: str, student_ids) -> None:
        self.calls.append((session_id, list(student_ids)))


@pytest.fixture
def changed(ctx) -> Recorder:
    recorder = Recorder()
    ctx.attendance_changed = recorder
    return recorder


def doc(data: bytes, name: str = "note.pdf", content_type: str | None = "application/pdf") -> dict:
    body = {"filename": name, "data_base64": base64.b64encode(data).decode()}
    if content_type is not None:
        body["content_type"] = content_type
    return body


async def record(db, session_id: str, student_id: str):
    return await db.fetchrow("SELECT status, source, checked_in_at FROM attendance"
                             " WHERE session_id = $1 AND student_id = $2", session_id, student_id)


async def notes(db, user_id: str, kind: str) -> list:
    return await db.fetch("SELECT title, body, data FROM notifications WHERE user_id = $1 AND kind = $2",
                          user_id, kind)


async def test_apply_approve_cancel_round_trip(client, db, world, changed) -> None:
    stu1 = await bearer(client, world.users["stu1"])
    fac1 = await bearer(client, world.users["fac1"])
    today = world.now.date()
    response = await client.post("/api/v1/leave", headers=stu1, json={
        "starts_on": today.isoformat(), "ends_on": (today + timedelta(days=1)).isoformat(),
        "reason": "  Fever  ", "document": doc(PDF)})
    assert response.status_code == 201, await response.get_data(as_text=True)
    leave = await response.get_json()
    assert leave["status"] == "applied" and leave["reason"] == "Fever" and leave["student_id"] == world.users["stu1"]
    assert leave["document"]["content_type"] == "application/pdf" and leave["document"]["size_bytes"] == len(PDF)
    # Both teachers of the covered classes hear of it.
    assert len(await notes(db, world.users["fac1"], "leave_applied")) == 1
    assert len(await notes(db, world.users["fac2"], "leave_applied")) == 1

    # Overlapping applications are refused.
    clash = await client.post("/api/v1/leave", headers=stu1, json={
        "starts_on": (today + timedelta(days=1)).isoformat(), "ends_on": (today + timedelta(days=3)).isoformat(),
        "reason": "again"})
    assert clash.status_code == 409 and (await clash.get_json())["error"]["code"] == "conflict"

    response = await client.post(f"/api/v1/leave/{leave['id']}/approve", headers=fac1, json={"note": "get well"})
    assert response.status_code == 200, await response.get_data(as_text=True)
    approved = await response.get_json()
    assert approved["status"] == "approved" and approved["decided_by"] == world.users["fac1"]
    # live1: stu1 was present (attended) and stays so; live2: no record yet, now excused.
    assert (await record(db, world.sessions["live1"], world.users["stu1"]))["status"] == "present"
    assert dict(await record(db, world.sessions["live2"], world.users["stu1"])) == {
        "status": "excused", "source": "leave", "checked_in_at": None}
    assert approved["excused_sessions"] == 1
    assert changed.calls == [(world.sessions["live2"], [world.users["stu1"]])]
    decided = await notes(db, world.users["stu1"], "leave_decided")
    assert len(decided) == 1 and "get well" in decided[0]["body"]
    audit = await db.fetchrow("SELECT actor, before, reason FROM audit_log WHERE session_id = $1 AND student_id = $2",
                              world.sessions["live2"], world.users["stu1"])
    assert audit["actor"] == world.users["fac1"] and audit["before"] is None
    assert audit["reason"].startswith(f"leave #{leave['id']} approved")

    again = await client.post(f"/api/v1/leave/{leave['id']}/approve", headers=fac1, json={})
    assert again.status_code == 409

    # The student cancels: the excused record goes back to what it was (none: the class is still on).
    changed.calls.clear()
    response = await client.post(f"/api/v1/leave/{leave['id']}/cancel", headers=stu1, json={})
    assert response.status_code == 200 and (await response.get_json())["status"] == "cancelled"
    assert await record(db, world.sessions["live2"], world.users["stu1"]) is None
    assert (await record(db, world.sessions["live1"], world.users["stu1"]))["status"] == "present"
    assert changed.calls == [(world.sessions["live2"], [world.users["stu1"]])]
    assert len(await notes(db, world.users["fac1"], "leave_cancelled")) == 1
    assert (await client.post(f"/api/v1/leave/{leave['id']}/cancel", headers=stu1, json={})).status_code == 409


async def test_cancel_restores_the_exact_prior_status_of_past_sessions(client, db, world, changed) -> None:
    stu2 = await bearer(client, world.users["stu2"])
    admin = await bearer(client, world.users["admin"])
    past = world.now - timedelta(days=2)
    # stu2 was marked absent by the hub when past1 closed.
    await db.execute("INSERT INTO attendance (session_id, student_id, status, source) VALUES ($1, $2, 'absent',"
                     " 'auto_absent')", world.sessions["past1"], world.users["stu2"])
    response = await client.post("/api/v1/leave", headers=stu2, json={
        "starts_on": past.date().isoformat(), "ends_on": past.date().isoformat(), "reason": "hospital"})
    leave = await response.get_json()
    await client.post(f"/api/v1/leave/{leave['id']}/approve", headers=admin, json={})
    assert (await record(db, world.sessions["past1"], world.users["stu2"]))["status"] == "excused"
    await client.post(f"/api/v1/leave/{leave['id']}/cancel", headers=admin, json={})
    assert dict(await record(db, world.sessions["past1"], world.users["stu2"])) == {
        "status": "absent", "source": "auto_absent", "checked_in_at": None}
    # The student hears of a cancellation they did not make.
    assert len(await notes(db, world.users["stu2"], "leave_cancelled")) == 1


async def test_a_checkin_during_an_approved_leave_wins(client, db, world, changed) -> None:
    stu1 = await bearer(client, world.users["stu1"])
    fac2 = await bearer(client, world.users["fac2"])
    leave = await (await client.post("/api/v1/leave", headers=stu1, json={
        "starts_on": world.now.date().isoformat(), "ends_on": world.now.date().isoformat(),
        "reason": "trip"})).get_json()
    await client.post(f"/api/v1/leave/{leave['id']}/approve", headers=fac2, json={})
    assert (await record(db, world.sessions["live2"], world.users["stu1"]))["status"] == "excused"
    # The student shows up after all: the hub's writer stores the check-in over the excuse.
    at = world.now
    await write_batch(db, [Commit(internal_key(), (AttendanceMark(
        world.sessions["live2"], world.users["stu1"], "present", at, "qr", None, "device:x"),))])
    assert (await record(db, world.sessions["live2"], world.users["stu1"]))["status"] == "present"
    # A later check-in never replaces the first.
    await write_batch(db, [Commit(internal_key(), (AttendanceMark(
        world.sessions["live2"], world.users["stu1"], "late", at + timedelta(minutes=20), "qr", None, "device:x"),))])
    assert (await record(db, world.sessions["live2"], world.users["stu1"]))["status"] == "present"
    # Cancelling the leave leaves the check-in alone.
    await client.post(f"/api/v1/leave/{leave['id']}/cancel", headers=stu1, json={})
    assert (await record(db, world.sessions["live2"], world.users["stu1"]))["status"] == "present"


async def test_students_and_faculty_only_reach_what_is_theirs(client, db, world, changed) -> None:
    stu1, stu2, stu3 = [await bearer(client, world.users[k]) for k in ("stu1", "stu2", "stu3")]
    fac1, fac2 = [await bearer(client, world.users[k]) for k in ("fac1", "fac2")]
    # stu2 takes only c1: only fac1 (and admins) may decide.
    leave = await (await client.post("/api/v1/leave", headers=stu2, json={
        "starts_on": world.now.date().isoformat(), "ends_on": world.now.date().isoformat(), "reason": "x",
        "document": doc(PNG, "../../etc/scan.png", "image/png")})).get_json()
    assert leave["document"]["filename"] == "scan.png"
    base = f"/api/v1/leave/{leave['id']}"
    for other in (stu1, stu3):
        assert (await client.get(base, headers=other)).status_code == 403
        assert (await client.get(f"{base}/document", headers=other)).status_code == 403
        assert (await client.post(f"{base}/cancel", headers=other, json={})).status_code == 403
        listed = await (await client.get("/api/v1/leave", headers=other)).get_json()
        assert leave["id"] not in [i["id"] for i in listed["items"]]
        assert (await client.post(f"{base}/approve", headers=other, json={})).status_code == 403
    assert (await client.post(f"{base}/approve", headers=fac2, json={})).status_code == 403
    assert (await client.get(f"{base}/document", headers=fac2)).status_code == 403
    fac2_list = await (await client.get("/api/v1/leave?status=applied", headers=fac2)).get_json()
    assert leave["id"] not in [i["id"] for i in fac2_list["items"]]
    fac1_list = await (await client.get("/api/v1/leave?status=applied&limit=500", headers=fac1)).get_json()
    assert leave["id"] in [i["id"] for i in fac1_list["items"]]
    assert set(fac1_list) == {"items", "total", "limit", "offset"}

    download = await client.get(f"{base}/document", headers=fac1)
    assert download.status_code == 200 and download.content_type == "image/png"
    assert await download.get_data() == PNG
    assert "attachment" in download.headers["Content-Disposition"]
    own = await client.get(f"{base}/document", headers=stu2)
    assert own.status_code == 200

    response = await client.post(f"{base}/reject", headers=fac1, json={"note": "no proof"})
    assert (await response.get_json())["status"] == "rejected"
    assert (await client.post(f"{base}/cancel", headers=stu2, json={})).status_code == 409
    # A rejected leave no longer blocks a new application for the same days.
    again = await client.post("/api/v1/leave", headers=stu2, json={
        "starts_on": world.now.date().isoformat(), "ends_on": world.now.date().isoformat(), "reason": "y"})
    assert again.status_code == 201
    assert (await client.get("/api/v1/leave/999999999999", headers=fac1)).status_code == 404
    assert (await client.get(f"/api/v1/leave/{2**64}", headers=fac1)).status_code == 404


# --- sessions created after the approval (hub.db.leave.excuse_on_leave) --------------------------


async def test_sessions_created_or_moved_onto_an_approved_leave_are_excused(client, db, world, changed) -> None:
    stu1 = await bearer(client, world.users["stu1"])
    admin, fac1 = [await bearer(client, world.users[k]) for k in ("admin", "fac1")]
    # Holidays are campus-wide (and a session on one is not covered): days no other test made one.
    first = world.now.date() + timedelta(days=random.randrange(100, 300))
    while await db.fetchval("SELECT EXISTS (SELECT 1 FROM holidays WHERE starts_on <= $2 AND ends_on >= $1)",
                            first, first + timedelta(days=4)):
        first += timedelta(days=5)
    leave = await (await client.post("/api/v1/leave", headers=stu1, json={
        "starts_on": first.isoformat(), "ends_on": (first + timedelta(days=1)).isoformat(),
        "reason": "Sister's wedding"})).get_json()
    approved = await (await client.post(f"/api/v1/leave/{leave['id']}/approve", headers=admin, json={})).get_json()
    assert approved["status"] == "approved" and approved["excused_sessions"] == 0  # no class on those days yet

    async def make_up(day) -> str:
        start = datetime.combine(day, time(10), timezone.utc)
        response = await client.post("/api/v1/sessions", headers=fac1, json={
            "course_id": world.courses["c1"], "room_id": world.room, "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=1)).isoformat()})
        assert response.status_code == 201, await response.get_data(as_text=True)
        return (await response.get_json())["session_id"]

    # A make-up class on a day of the leave: stu1 is excused at once, as approval would have;
    # stu2 (same course, not on leave) has no record.
    on_leave = await make_up(first)
    assert dict(await record(db, on_leave, world.users["stu1"])) == {
        "status": "excused", "source": "leave", "checked_in_at": None}
    assert await record(db, on_leave, world.users["stu2"]) is None
    audit = await db.fetchrow("SELECT actor, before, reason FROM audit_log WHERE session_id = $1 AND student_id = $2",
                              on_leave, world.users["stu1"])
    assert audit["actor"] == world.users["fac1"] and audit["before"] is None
    assert audit["reason"].startswith(f"leave #{leave['id']} approved: Sister's wedding")
    # One outside the leave is not touched, until it is moved onto a day of the leave.
    later = await make_up(first + timedelta(days=4))
    assert await record(db, later, world.users["stu1"]) is None
    moved_to = datetime.combine(first + timedelta(days=1), time(14), timezone.utc)
    moved = await client.post(f"/api/v1/sessions/{later}/reschedule", headers=fac1, json={
        "starts_at": moved_to.isoformat(), "ends_at": (moved_to + timedelta(hours=1)).isoformat()})
    assert moved.status_code == 200, await moved.get_data(as_text=True)
    assert (await record(db, later, world.users["stu1"]))["status"] == "excused"
    assert (await (await client.get(f"/api/v1/leave/{leave['id']}", headers=admin)).get_json())[
        "excused_sessions"] == 2

    # Cancelling the leave reverts these excuses like any other: the classes are still to come.
    response = await client.post(f"/api/v1/leave/{leave['id']}/cancel", headers=stu1, json={})
    assert response.status_code == 200
    assert await record(db, on_leave, world.users["stu1"]) is None
    assert await record(db, later, world.users["stu1"]) is None
    assert sorted(changed.calls) == sorted([(on_leave, [world.users["stu1"]]), (later, [world.users["stu1"]])])


async def test_timetable_sessions_generated_or_restored_onto_an_approved_leave_are_excused(
        client, db, world, changed) -> None:
    admin, fac1 = [await bearer(client, world.users[k]) for k in ("admin", "fac1")]
    sfx = world.suffix
    # A UTC term of three weeks far in the future, on none of the (campus-wide) holidays of other tests.
    monday = date(2300, 1, 1) + timedelta(days=7 * random.randrange(0, 200_000))
    monday -= timedelta(days=monday.weekday())
    while await db.fetchval("SELECT EXISTS (SELECT 1 FROM holidays WHERE starts_on <= $2 AND ends_on >= $1)",
                            monday, monday + timedelta(weeks=3)):
        monday += timedelta(weeks=3)
    term, section = f"lt_{sfx}", f"ls_{sfx}"
    for path, body in (
            ("terms", {"id": term, "name": "Leave term", "starts_on": str(monday),
                       "ends_on": str(monday + timedelta(weeks=3, days=-1)), "timezone": "UTC"}),
            ("sections", {"id": section, "course_id": world.courses["c1"], "term_id": term, "name": f"L{sfx}"}),
            ("timetable-slots", {"id": f"lmon_{sfx}", "section_id": section, "room_id": world.room,
                                 "weekday": "monday", "starts_time": "09:00", "ends_time": "10:00"})):
        response = await client.post(f"/api/v1/{path}", headers=admin, json=body)
        assert response.status_code == 201, await response.get_data(as_text=True)

    async def session_on(day) -> str:
        return await db.fetchval("SELECT id FROM class_sessions WHERE section_id = $1"
                                 " AND (starts_at AT TIME ZONE 'UTC')::date = $2",
                                 section, day)

    mon2 = await session_on(monday + timedelta(days=7))
    # Week 2's Monday class is prepared (history), then a holiday cancels it.
    assert (await client.put(f"/api/v1/sessions/{mon2}/topics", headers=fac1,
                             json={"topics": ["Graphs"]})).status_code == 200
    holiday = await (await client.post("/api/v1/holidays", headers=admin, json={
        "name": f"Break {sfx}", "starts_on": str(monday + timedelta(days=7)),
        "ends_on": str(monday + timedelta(days=7))})).get_json()
    assert await db.fetchval("SELECT status FROM class_sessions WHERE id = $1", mon2) == "cancelled"
    # stu1 is on leave Monday and Tuesday of week 2 (filed long ago: inserted, then approved through the API).
    leave_id = await db.fetchval(
        "INSERT INTO leave_applications (student_id, starts_on, ends_on, reason) VALUES ($1, $2, $3, 'Surgery')"
        " RETURNING id", world.users["stu1"], monday + timedelta(days=7), monday + timedelta(days=8))
    approved = await (await client.post(f"/api/v1/leave/{leave_id}/approve", headers=admin, json={})).get_json()
    assert approved["excused_sessions"] == 0  # the only class then was cancelled

    # A Tuesday slot generates week 2's Tuesday class on the leave: excused; the other Tuesdays not.
    response = await client.post("/api/v1/timetable-slots", headers=admin, json={
        "id": f"ltue_{sfx}", "section_id": section, "room_id": world.room, "weekday": "tuesday",
        "starts_time": "11:00", "ends_time": "12:00"})
    assert response.status_code == 201, await response.get_data(as_text=True)
    tue1, tue2, tue3 = [await session_on(monday + timedelta(days=d)) for d in (1, 8, 15)]
    assert (await record(db, tue2, world.users["stu1"]))["status"] == "excused"
    assert await record(db, tue1, world.users["stu1"]) is None and await record(db, tue3, world.users["stu1"]) is None
    assert await record(db, tue2, world.users["stu2"]) is None
    # The holiday goes: Monday's class is restored, and excused too.
    assert (await client.delete(f"/api/v1/holidays/{holiday['id']}", headers=admin)).status_code == 200
    assert await db.fetchval("SELECT status FROM class_sessions WHERE id = $1", mon2) == "scheduled"
    assert dict(await record(db, mon2, world.users["stu1"])) == {
        "status": "excused", "source": "leave", "checked_in_at": None}
    assert (await (await client.get(f"/api/v1/leave/{leave_id}", headers=admin)).get_json())["excused_sessions"] == 2

    assert (await client.post(f"/api/v1/leave/{leave_id}/cancel", headers=admin, json={})).status_code == 200
    assert await record(db, tue2, world.users["stu1"]) is None and await record(db, mon2, world.users["stu1"]) is None


BAD_APPLICATIONS = [
    ({"starts_on": "2025-13-01", "ends_on": "2025-01-01", "reason": "x"}, 400, "invalid_request", "starts_on"),
    ({"starts_on": "TODAY", "ends_on": "TODAY-1", "reason": "x"}, 400, "invalid_request", "ends_on"),
    ({"starts_on": "TODAY", "ends_on": "TODAY+90", "reason": "x"}, 400, "invalid_request", "ends_on"),
    ({"starts_on": "TODAY-60", "ends_on": "TODAY-59", "reason": "x"}, 400, "invalid_request", "starts_on"),
    ({"starts_on": "TODAY", "ends_on": "TODAY", "reason": "   "}, 400, "invalid_request", "reason"),
    ({"starts_on": "TODAY", "ends_on": "TODAY", "reason": "x", "document": "nope"}, 400, "invalid_request", "document"),
    ({"starts_on": "TODAY", "ends_on": "TODAY", "reason": "x", "document": {"data_base64": "!!"}},
     400, "invalid_request", "document"),
    ({"starts_on": "TODAY", "ends_on": "TODAY", "reason": "x", "document": "EXE"}, 415, "unsupported_document",
     "document"),
    ({"starts_on": "TODAY", "ends_on": "TODAY", "reason": "x", "document": "MISLABELLED"}, 415,
     "unsupported_document", "document"),
]


async def test_bad_applications_are_clear_errors(client, db, world) -> None:
    stu3 = await bearer(client, world.users["stu3"])
    today = world.now.date()

    def day(value: str) -> str:
        if not value.startswith("TODAY"):
            return value
        return (today + timedelta(days=int(value[5:] or 0))).isoformat()

    for body, status, code, field in BAD_APPLICATIONS:
        body = {**body, "starts_on": day(body["starts_on"]), "ends_on": day(body["ends_on"])}
        if body.get("document") == "EXE":
            body["document"] = doc(b"MZ\x90\x00" + b"\x00" * 64, "x.exe", None)
        elif body.get("document") == "MISLABELLED":
            body["document"] = doc(PNG, "x.pdf", "application/pdf")
        response = await client.post("/api/v1/leave", headers=stu3, json=body)
        assert response.status_code == status, (body, await response.get_data(as_text=True))
        error = (await response.get_json())["error"]
        assert (error["code"], error.get("field")) == (code, field), body
    assert await db.fetchval("SELECT count(*) FROM leave_applications WHERE student_id = $1",
                             world.users["stu3"]) == 0


async def test_upload_size_limits(client, world) -> None:
    stu3 = await bearer(client, world.users["stu3"])
    today = world.now.date().isoformat()
    # Far over the app's 64 KiB default, within this route's limit.
    big = PDF + b"0" * (4 * 1024 * 1024)
    response = await client.post("/api/v1/leave", headers=stu3, json={
        "starts_on": today, "ends_on": today, "reason": "big scan", "document": doc(big)})
    assert response.status_code == 201, await response.get_data(as_text=True)
    assert (await response.get_json())["document"]["size_bytes"] == len(big)
    # Over 5 MB of document, but a body the route still reads: the document is refused.
    too_big = PDF + b"0" * (5 * 1024 * 1024)
    response = await client.post("/api/v1/leave", headers=stu3, json={
        "starts_on": today, "ends_on": today, "reason": "x", "document": doc(too_big)})
    assert response.status_code == 413 and (await response.get_json())["error"]["code"] == "document_too_large"
    # Other routes keep the 64 KiB limit.
    response = await client.post("/api/v1/corrections", headers=stu3, json={
        "session_id": "x", "requested_status": "present", "reason": "x" * (100 * 1024)})
    assert response.status_code == 413


async def test_leave_pages_render(client, world) -> None:
    from web_helpers import page_login

    await page_login(client, world.users["stu1"])
    page = await client.get("/student/leave")
    assert page.status_code == 200 and 'id="leave-form"' in await page.get_data(as_text=True)
    assert (await client.get("/faculty/queues")).status_code == 403
    await page_login(client, world.users["fac1"])
    page = await client.get("/faculty/queues")
    assert page.status_code == 200 and 'id="leave-queue"' in await page.get_data(as_text=True)
