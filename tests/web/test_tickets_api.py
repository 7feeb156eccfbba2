"""The tickets API: who may report, see and move tickets; the workflow; SLA; validation; live messages."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from web_helpers import PASSWORD, bearer

from hub.core.bus import DEVICES_TOPIC
from hub.core.passwords import hash_password


async def _alarm(db, device_id: str, severity: str = "major", type_: str = "device_offline") -> int:
    return await db.fetchval(
        "INSERT INTO alarms (device_id, room_id, type, severity, state, raised_at, message)"
        " SELECT id, room_id, $2, $3, 'active_unacked', now(), 'camera unreachable' FROM devices WHERE id = $1"
        " RETURNING id", device_id, type_, severity)


async def _second_ops(db, world) -> str:
    user = f"ops2_{world.suffix}"
    await db.execute("INSERT INTO users (id, username, display_name, role, password_hash)"
                     " VALUES ($1, $1, 'Second Ops', 'ops', $2)", user, hash_password(PASSWORD))
    return user


async def _report(client, headers, **body):
    response = await client.post("/api/v1/tickets", headers=headers, json=body)
    return response.status_code, await response.get_json()


def _now(clock) -> datetime:
    return datetime.fromtimestamp(clock.now, timezone.utc)


async def test_anyone_reports_a_problem_and_sees_only_their_own(client, world, clock):
    stu1, stu2 = await bearer(client, world.username("stu1")), await bearer(client, world.username("stu2"))
    status, ticket = await _report(client, stu1, title="  Projector flickers  ", description="Row 3 side",
                                   room_id=world.room)
    assert status == 201, ticket
    assert (ticket["title"], ticket["state"], ticket["priority"], ticket["source"]) == (
        "Projector flickers", "open", "P3", "report")
    assert ticket["reported_by"] == world.users["stu1"] and ticket["building"] == "Main"
    assert datetime.fromisoformat(ticket["sla_due_at"]) == _now(clock) + timedelta(days=7)
    assert ticket["sla_breached"] is False and ticket["auto_close_after_s"] is None
    mine = await (await client.get(f"/api/v1/tickets?room_id={world.room}", headers=stu1)).get_json()
    assert [t["id"] for t in mine["items"]] == [ticket["id"]] and mine["total"] == 1
    theirs = await (await client.get(f"/api/v1/tickets?room_id={world.room}", headers=stu2)).get_json()
    assert theirs == {"items": [], "total": 0, "limit": 50, "offset": 0}
    assert (await client.get(f"/api/v1/tickets/{ticket['id']}", headers=stu2)).status_code == 404
    assert (await client.post(f"/api/v1/tickets/{ticket['id']}/comments", headers=stu2,
                              json={"body": "me too"})).status_code == 404
    ops = await bearer(client, world.username("ops"))
    staff_view = await (await client.get(f"/api/v1/tickets?room_id={world.room}", headers=ops)).get_json()
    assert [t["id"] for t in staff_view["items"]] == [ticket["id"]]


@pytest.mark.parametrize("body, status, field", [
    ({"room_id": "R"}, 400, "title"),
    ({"title": "   ", "room_id": "R"}, 400, "title"),
    ({"title": "x" * 201, "room_id": "R"}, 400, "title"),
    ({"title": "Broken"}, 400, "room_id"),
    ({"title": "Broken", "room_id": "no-such-room"}, 400, "room_id"),
    ({"title": "Broken", "device_id": "no-such-device"}, 400, "device_id"),
    ({"title": "Broken", "room_id": "R", "priority": "P0"}, 400, "priority"),
    ({"title": "Broken", "room_id": "R", "priority": "urgent"}, 400, "priority"),
    ({"title": "Nul\x00", "room_id": "R"}, 400, "title"),
    ({"title": "Broken", "room_id": "R", "alarm_id": 1}, 403, None),
])
async def test_bad_reports_are_refused_with_the_field(client, world, body, status, field):
    headers = await bearer(client, world.username("fac1"))
    body = {k: (world.room if v == "R" else v) for k, v in body.items()}
    got, error = await _report(client, headers, **body)
    assert got == status, error
    assert error["error"].get("field") == field
    assert (await client.post("/api/v1/tickets", headers=headers, data="title=x")).status_code == 415


async def test_workflow_from_alarm_to_closed(client, world, db, bus):
    ops, fac = await bearer(client, world.username("ops")), await bearer(client, world.username("fac1"))
    other_ops = await bearer(client, await _second_ops(db, world))
    alarm_id = await _alarm(db, world.device)
    with bus.subscribe([DEVICES_TOPIC]) as live:
        status, ticket = await _report(client, ops, title="Camera offline", alarm_id=alarm_id)
        assert status == 201, ticket
        assert (ticket["priority"], ticket["source"], ticket["device_id"], ticket["room_id"], ticket["alarm_type"]) == (
            "P2", "alarm", world.device, world.room, "device_offline")
        assert ticket["auto_close_after_s"] == 1800
        message = json.loads((await live.receive()).json)
        assert (message["type"], message["origin"], message["change"], message["id"]) == (
            "ticket", "web", "created", ticket["id"])
    status, error = await _report(client, ops, title="again", alarm_id=alarm_id)
    assert status == 409 and error["error"]["field"] == "alarm_id"
    tid = ticket["id"]

    async def move(headers, to, **extra):
        response = await client.post(f"/api/v1/tickets/{tid}/transition", headers=headers, json={"to": to, **extra})
        return response.status_code, await response.get_json()

    assert (await move(ops, "resolved"))[0] == 409  # open -> resolved skips the work
    assert (await move(ops, "assigned"))[0] == 409  # assigning is its own call
    assign = f"/api/v1/tickets/{tid}/assign"
    assert (await client.post(assign, headers=fac, json={"assignee": world.users["ops"]})).status_code == 403
    refused = await client.post(assign, headers=ops, json={"assignee": world.users["stu1"]})
    assert refused.status_code == 400 and (await refused.get_json())["error"]["field"] == "assignee"
    assigned = await client.post(assign, headers=ops, json={"assignee": world.users["ops"], "comment": "on it"})
    assert (await assigned.get_json())["state"] == "assigned"
    assert (await move(other_ops, "in_progress"))[0] == 403  # only the assignee starts it
    status, started = await move(ops, "in_progress")
    assert status == 200 and started["state"] == "in_progress"
    status, resolved = await move(ops, "resolved", comment="replaced the cable")
    assert status == 200 and resolved["resolved_at"] is not None
    status, closed = await move(ops, "closed")
    assert status == 200 and (closed["state"], closed["close_reason"]) == ("closed", "resolved")
    assert (await move(fac, "open"))[0] == 404  # faculty did not report it: cannot even see it
    status, reopened = await move(other_ops, "open")
    assert status == 200 and reopened["assignee"] is None and reopened["closed_at"] is None
    assert (await move(ops, "closed"))[0] == 400  # cancelling needs a reason
    status, cancelled = await move(ops, "closed", comment="duplicate of another ticket")
    assert status == 200 and cancelled["close_reason"] == "duplicate of another ticket"

    detail = await (await client.get(f"/api/v1/tickets/{tid}", headers=ops)).get_json()
    assert [e["kind"] for e in detail["events"]] == [
        "created", "assigned", "start", "resolve", "close", "reopen", "cancel"]
    assert [(e["from_state"], e["to_state"]) for e in detail["events"]][1:4] == [
        ("open", "assigned"), ("assigned", "in_progress"), ("in_progress", "resolved")]
    assert [c["body"] for c in detail["comments"]] == ["on it", "replaced the cable", "duplicate of another ticket"]


async def test_reporter_confirms_or_reopens_a_resolved_ticket(client, world):
    stu, ops = await bearer(client, world.username("stu1")), await bearer(client, world.username("ops"))
    _, ticket = await _report(client, stu, title="No Wi-Fi", room_id=world.room)
    tid = ticket["id"]
    await client.post(f"/api/v1/tickets/{tid}/assign", headers=ops, json={"assignee": world.users["ops"]})
    for to in ("in_progress", "resolved"):
        assert (await client.post(f"/api/v1/tickets/{tid}/transition", headers=ops, json={"to": to})).status_code == 200
    # The reporter may not do the assignee's work, but may reopen or confirm the fix.
    reopen = await client.post(f"/api/v1/tickets/{tid}/transition", headers=stu, json={"to": "in_progress"})
    assert reopen.status_code == 200 and (await reopen.get_json())["resolved_at"] is None
    resolve = await client.post(f"/api/v1/tickets/{tid}/transition", headers=stu, json={"to": "resolved"})
    assert resolve.status_code == 403
    await client.post(f"/api/v1/tickets/{tid}/transition", headers=ops, json={"to": "resolved"})
    close = await client.post(f"/api/v1/tickets/{tid}/transition", headers=stu, json={"to": "closed"})
    assert close.status_code == 200 and (await close.get_json())["state"] == "closed"
    comment = await client.post(f"/api/v1/tickets/{tid}/comments", headers=stu, json={"body": "Works now, thanks"})
    assert comment.status_code == 201 and (await comment.get_json())["author"] == world.users["stu1"]
    empty = await client.post(f"/api/v1/tickets/{tid}/comments", headers=stu, json={"body": " "})
    assert empty.status_code == 400 and (await empty.get_json())["error"]["field"] == "body"


async def test_sla_breach_filters_priority_change_and_search(client, world, clock):
    ops = await bearer(client, world.username("ops"))
    _, slow = await _report(client, ops, title="Door sensor stuck", room_id=world.room, priority="P0")
    _, later = await _report(client, ops, title="Flickering lamp", room_id=world.room, priority="P4")
    assert datetime.fromisoformat(slow["sla_due_at"]) == _now(clock) + timedelta(hours=4)
    clock.advance(5 * 3600)
    ops = await bearer(client, world.username("ops"))  # the old access token has expired
    base = f"/api/v1/tickets?room_id={world.room}"
    breached = await (await client.get(base + "&breached=true", headers=ops)).get_json()
    assert [t["id"] for t in breached["items"]] == [slow["id"]] and breached["items"][0]["sla_breached"] is True
    within = await (await client.get(base + "&breached=false", headers=ops)).get_json()
    assert [t["id"] for t in within["items"]] == [later["id"]]
    found = await (await client.get(base + "&q=LAMP", headers=ops)).get_json()
    assert [t["id"] for t in found["items"]] == [later["id"]]
    page = await (await client.get(base + "&limit=1&offset=1", headers=ops)).get_json()
    assert (page["total"], page["limit"], page["offset"], len(page["items"])) == (2, 1, 1, 1)
    assert (await client.get(base + "&state=bogus", headers=ops)).status_code == 400
    # Lowering the priority moves the due time (from creation): no longer breached.
    amended = await client.patch(f"/api/v1/tickets/{slow['id']}", headers=ops, json={"priority": "P2"})
    body = await amended.get_json()
    assert amended.status_code == 200, body
    assert datetime.fromisoformat(body["sla_due_at"]) == datetime.fromisoformat(slow["created_at"]) + timedelta(days=3)
    assert body["sla_breached"] is False
    fac = await bearer(client, world.username("fac1"))
    assert (await client.patch(f"/api/v1/tickets/{slow['id']}", headers=fac, json={"priority": "P0"})).status_code == 403


async def test_sla_policy_admin_only_and_validated(client, world, clock):
    ops, admin = await bearer(client, world.username("ops")), await bearer(client, world.username("admin"))
    policy = await (await client.get("/api/v1/tickets/sla-policy", headers=ops)).get_json()
    assert {p["priority"]: p["resolve_within_s"] for p in policy["priorities"]}["P0"] == 4 * 3600
    assert policy["auto_raise_severities"] == ["critical"]
    change = {"priorities": [{"priority": "P3", "resolve_within_s": 3600}], "auto_raise_severities": ["major", "critical"]}
    assert (await client.put("/api/v1/tickets/sla-policy", headers=ops, json=change)).status_code == 403
    student = await bearer(client, world.username("stu1"))
    assert (await client.get("/api/v1/tickets/sla-policy", headers=student)).status_code == 403
    original = [{k: p[k] for k in ("priority", "resolve_within_s", "auto_close_after_s")} for p in policy["priorities"]]
    try:
        saved = await client.put("/api/v1/tickets/sla-policy", headers=admin, json=change)
        body = await saved.get_json()
        assert saved.status_code == 200, body
        assert body["auto_raise_severities"] == ["critical", "major"] and body["updated_by"] == world.users["admin"]
        _, ticket = await _report(client, student, title="Chair broken", room_id=world.room)
        assert datetime.fromisoformat(ticket["sla_due_at"]) == _now(clock) + timedelta(hours=1)
        for bad, field in [({"priorities": [{"priority": "P9"}]}, "priorities"),
                           ({"priorities": [{"priority": "P1", "resolve_within_s": 5}]}, "resolve_within_s"),
                           ({"priorities": [{"priority": "P1", "auto_close_after_s": -1}]}, "auto_close_after_s"),
                           ({"auto_raise_severities": ["fatal"]}, "auto_raise_severities")]:
            refused = await client.put("/api/v1/tickets/sla-policy", headers=admin, json=bad)
            assert refused.status_code == 400 and (await refused.get_json())["error"]["field"] == field, bad
    finally:
        restored = await client.put("/api/v1/tickets/sla-policy", headers=admin,
                                    json={"priorities": original, "auto_raise_severities": ["critical"]})
        assert restored.status_code == 200


async def test_unknown_and_huge_ids_are_404(client, world):
    ops = await bearer(client, world.username("ops"))
    for path in ("/api/v1/tickets/999999999999", f"/api/v1/tickets/{2**70}", "/api/v1/tickets/abc"):
        response = await client.get(path, headers=ops)
        assert response.status_code == 404 and (await response.get_json())["error"]["code"] == "not_found"
    assert (await client.get("/api/v1/tickets")).status_code == 401
    staff = await (await client.get("/api/v1/tickets/assignees?limit=500", headers=ops)).get_json()
    assert {"id": world.users["ops"], "display_name": f"Ops {world.suffix}", "role": "ops"} in staff["items"]


async def test_console_pages_and_report_form(client, world, db):
    from web_helpers import page_login

    alarm_id = await _alarm(db, world.device, severity="critical")
    await page_login(client, world.username("stu1"))
    report = await (await client.get(f"/report?room_id={world.room}")).get_data(as_text=True)
    assert f'<option value="{world.room}">Main · Room {world.suffix}</option>' in report
    assert '<option value="P0"' not in report and 'id="report-form"' in report
    for page in ("/ops", "/ops/tickets", "/ops/alarms", f"/ops/devices/{world.device}"):
        assert (await client.get(page)).status_code == 403, page
    await client.post("/logout")
    await page_login(client, world.username("ops"))
    overview = await (await client.get("/ops")).get_data(as_text=True)
    assert f'<article class="tile" data-room-id="{world.room}" data-health="critical" data-building="Main">' in overview
    assert f'data-device-id="{world.device}" data-health="critical"' in overview
    room = await (await client.get(f"/ops/rooms/{world.room}")).get_data(as_text=True)
    assert (f'class="device device-online" data-device-id="{world.device}" data-health="critical"'
            f' data-kind="qr_camera"') in room
    assert f'<span class="sev sev-critical" data-alarm-id="{alarm_id}">Device offline</span>' in room
    ops = await bearer(client, world.username("ops"))
    _, ticket = await _report(client, ops, title="Camera offline", alarm_id=alarm_id)
    board = await (await client.get("/ops/tickets")).get_data(as_text=True)
    assert f'data-ticket-id="{ticket["id"]}" data-state="open"' in board
    detail = await client.get(f"/ops/devices/{world.device}")
    assert detail.status_code == 200 and 'data-health="critical"' in await detail.get_data(as_text=True)
    assert (await client.get("/ops/devices/no-such-device")).status_code == 404
