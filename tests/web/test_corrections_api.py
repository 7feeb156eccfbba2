"""Corrections end to end through the API: request, who may see and decide, approval writing the
record with its audit entry, the live-actor and notification hooks, and the rules' refusals."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from web_helpers import bearer

pytestmark = pytest.mark.integration


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    async def __call__(self, session_id: str, student_ids) -> None:
        self.calls.append((session_id, list(student_ids)))


@pytest.fixture
def changed(ctx) -> Recorder:
    recorder = Recorder()
    ctx.attendance_changed = recorder
    return recorder


async def test_request_and_approve(client, db, world, changed) -> None:
    stu2, stu3 = await bearer(client, world.users["stu2"]), await bearer(client, world.users["stu3"])
    fac1, fac2 = await bearer(client, world.users["fac1"]), await bearer(client, world.users["fac2"])
    past1 = world.sessions["past1"]
    # stu2 has no record of past1 (c1, two days ago): they say they were there.
    response = await client.post("/api/v1/corrections", headers=stu2, json={
        "session_id": past1, "requested_status": "present", "reason": "The scanner was down."})
    assert response.status_code == 201, await response.get_data(as_text=True)
    correction = await response.get_json()
    assert (correction["status"], correction["current_status"], correction["requested_status"]) == (
        "pending", None, "present")
    assert correction["course_id"] == world.courses["c1"]
    fac_notes = await db.fetch("SELECT kind FROM notifications WHERE user_id = $1", world.users["fac1"])
    assert [n["kind"] for n in fac_notes] == ["correction_requested"]

    duplicate = await client.post("/api/v1/corrections", headers=stu2, json={
        "session_id": past1, "requested_status": "late", "reason": "again"})
    assert duplicate.status_code == 409

    path = f"/api/v1/corrections/{correction['id']}"
    # Nobody else's business: another student, the other course's teacher.
    assert (await client.get(path, headers=stu3)).status_code == 403
    assert (await client.post(f"{path}/withdraw", headers=stu3, json={})).status_code == 403
    assert (await client.post(f"{path}/approve", headers=fac2, json={})).status_code == 403
    assert (await client.post(f"{path}/approve", headers=stu2, json={})).status_code == 403
    for who, visible in ((stu3, False), (fac2, False), (fac1, True), (stu2, True)):
        page = await (await client.get("/api/v1/corrections?status=pending&limit=500", headers=who)).get_json()
        assert (correction["id"] in [i["id"] for i in page["items"]]) is visible

    response = await client.post(f"{path}/approve", headers=fac1, json={"note": "confirmed with the TA"})
    assert response.status_code == 200
    decided = await response.get_json()
    assert decided["status"] == "approved" and decided["record_status"] == "present"
    row = await db.fetchrow("SELECT status, source FROM attendance WHERE session_id = $1 AND student_id = $2",
                            past1, world.users["stu2"])
    assert dict(row) == {"status": "present", "source": "correction"}
    audit = await db.fetchrow("SELECT actor, before, after, reason FROM audit_log"
                              " WHERE session_id = $1 AND student_id = $2", past1, world.users["stu2"])
    assert audit["actor"] == world.users["fac1"] and audit["before"] is None
    assert json.loads(audit["after"])["status"] == "present"
    assert "scanner was down" in audit["reason"] and "confirmed with the TA" in audit["reason"]
    assert changed.calls == [(past1, [world.users["stu2"]])]
    student_notes = await db.fetch("SELECT kind, data FROM notifications WHERE user_id = $1", world.users["stu2"])
    assert [n["kind"] for n in student_notes] == ["correction_decided"]

    assert (await client.post(f"{path}/reject", headers=fac1, json={})).status_code == 409
    assert (await client.post(f"{path}/withdraw", headers=stu2, json={})).status_code == 409


async def test_reject_and_withdraw_change_nothing(client, db, world, changed) -> None:
    stu1, fac1 = await bearer(client, world.users["stu1"]), await bearer(client, world.users["fac1"])
    live1 = world.sessions["live1"]
    first = await (await client.post("/api/v1/corrections", headers=stu1, json={
        "session_id": live1, "requested_status": "excused", "reason": "I left ill"})).get_json()
    assert first["current_status"] == "present"
    response = await client.post(f"/api/v1/corrections/{first['id']}/reject", headers=fac1, json={"note": "no"})
    assert (await response.get_json())["status"] == "rejected"
    second = await (await client.post("/api/v1/corrections", headers=stu1, json={
        "session_id": live1, "requested_status": "late", "reason": "honest"})).get_json()
    response = await client.post(f"/api/v1/corrections/{second['id']}/withdraw", headers=stu1, json={})
    assert (await response.get_json())["status"] == "withdrawn"
    row = await db.fetchrow("SELECT status FROM attendance WHERE session_id = $1 AND student_id = $2",
                            live1, world.users["stu1"])
    assert row["status"] == "present" and changed.calls == []
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE session_id = $1", live1) == 0


async def test_refusals(client, db, world) -> None:
    stu1 = await bearer(client, world.users["stu1"])
    stu3 = await bearer(client, world.users["stu3"])
    future = f"future_{world.suffix}"
    await db.execute(
        "INSERT INTO class_sessions (id, course_id, room_id, starts_at, ends_at) VALUES ($1, $2, $3, $4, $5)",
        future, world.courses["c1"], world.room, world.now + timedelta(days=1), world.now + timedelta(days=1, hours=1))
    cases = [
        (stu1, {"session_id": future, "requested_status": "present", "reason": "x"}, 409, "conflict"),
        (stu1, {"session_id": world.sessions["live1"], "requested_status": "present", "reason": "x"}, 409, "conflict"),
        (stu1, {"session_id": world.sessions["live1"], "requested_status": "here", "reason": "x"}, 400,
         "invalid_request"),
        (stu1, {"session_id": world.sessions["live1"], "requested_status": "late", "reason": "  "}, 400,
         "invalid_request"),
        (stu1, {"session_id": world.sessions["live1"], "requested_status": "late", "reason": "x" * 1001}, 400,
         "invalid_request"),
        # stu3 does not take c1: the session is none of theirs.
        (stu3, {"session_id": world.sessions["past1"], "requested_status": "present", "reason": "x"}, 404,
         "not_found"),
        (stu1, {"session_id": "no-such-session", "requested_status": "present", "reason": "x"}, 404, "not_found"),
        (stu1, {"session_id": world.sessions["live1"], "requested_status": "late"}, 400, "invalid_request"),
        (stu1, {"session_id": world.sessions["live1"], "requested_status": "late", "reason": "a\ud800b"}, 400,
         "invalid_request"),
        (stu1, {"session_id": "x\x00", "requested_status": "late", "reason": "x"}, 400, "invalid_request"),
    ]
    for who, body, status, code in cases:
        response = await client.post("/api/v1/corrections", headers=who, json=body)
        assert response.status_code == status, (body, await response.get_data(as_text=True))
        assert (await response.get_json())["error"]["code"] == code
    fac1 = await bearer(client, world.users["fac1"])
    assert (await client.post("/api/v1/corrections", headers=fac1, json={
        "session_id": world.sessions["live1"], "requested_status": "late", "reason": "x"})).status_code == 403
    assert (await client.get("/api/v1/corrections?status=nope", headers=fac1)).status_code == 400
    assert (await client.get("/api/v1/corrections/123456789012", headers=fac1)).status_code == 404
    assert (await client.get("/api/v1/corrections", headers=await bearer(client, world.users["ops"]))).status_code == 403


async def test_corrections_page_lists_the_students_records(client, world) -> None:
    from web_helpers import page_login

    await page_login(client, world.users["stu1"])
    page = await client.get("/student/corrections")
    html = await page.get_data(as_text=True)
    assert page.status_code == 200 and world.sessions["past1"] in html and 'id="correction-form"' in html
